package coordinator

import (
	"context"
	"net"

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

// coordinatorMachine is the optional provider capability of saying that
// its nodes run on the coordinator's own machine (local nodes). They then
// use the coordinator's chunk store as theirs: synced code is on the
// machine once, as uploaded, and no node fetches it.
type coordinatorMachine interface {
	OnCoordinatorMachine() bool
}

// treeSharer is the optional provider capability of a directory where the
// nodes of a cluster that share a machine keep one copy of each synced
// tree (AgentConfig.TreeDir).
type treeSharer interface {
	SharedTreeDir(cluster string) string
}

// Offerer is the optional provider capability of listing what it offers
// outside any catalog (the local machine, ssh pools); the optimizer
// weighs these beside the catalog's offers.
type Offerer interface {
	Offers() ([]catalog.Offer, error)
}

// Checker is the optional provider capability of saying whether it can
// launch anything, and why (not), for `sky-coord check`.
type Checker interface {
	Check() (enabled bool, reason string)
}

// CoordinatorForwarder is the optional provider capability of making the
// coordinator reachable from a node that has no route to it (ssh pools:
// a remote forward on the kept SSH connection). It returns the URL the
// node's agent should use.
type CoordinatorForwarder interface {
	ForwardCoordinator(ctx context.Context, inst providers.Instance, coordAddr string) (string, error)
}

// AgentDialer is the optional provider capability of reaching an agent's
// address through the provider (ssh pools: a forwarded channel).
type AgentDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}
