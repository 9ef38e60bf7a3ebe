package coordinator

import (
	"context"

	"github.com/sky-coord/sky-coord/bootstrap"
	"github.com/sky-coord/sky-coord/catalog"
	"github.com/sky-coord/sky-coord/providers"
)

// Connector is the optional provider capability of handing out a bootstrap
// Transport to one of its instances.
type Connector interface {
	Transport(ctx context.Context, inst providers.Instance) (bootstrap.Transport, error)
}

// Validator is the optional provider capability of rejecting a task before
// anything is provisioned (a file mount the provider cannot honour, say).
type Validator interface {
	ValidateTask(req providers.LaunchRequest) error
}

// privateMounter is the optional provider capability of giving each node
// a private view of absolute file_mounts destinations (local nodes that
// share one machine).
type privateMounter interface {
	PrivateFileMounts() bool
}

// Offerer is the optional provider capability of listing what it offers
// outside any catalog (the local machine, ssh pools); the optimizer
// weighs these beside the catalog's offers.
type Offerer interface {
	Offers() ([]catalog.Offer, error)
}
