// Package providers defines how the coordinator creates, finds, stops and
// terminates instances: the Provider interface, its typed errors, and a
// contract test suite every provider must pass.
package providers

import (
	"context"
	"errors"
)

// Provider is one place instances come from. Every method is idempotent:
// Launch of a (cluster, node index) that exists returns the existing
// instance, Terminate of a cluster with nothing left succeeds.
type Provider interface {
	Name() string
	Launch(ctx context.Context, req LaunchRequest) ([]Instance, error)
	Describe(ctx context.Context, cluster string) ([]Instance, error)
	Stop(ctx context.Context, cluster string) error
	Start(ctx context.Context, cluster string) ([]Instance, error)
	Terminate(ctx context.Context, cluster string) error
	OpenPorts(ctx context.Context, cluster string, ports []PortRange) error
}

// LaunchRequest asks for a cluster's nodes.
type LaunchRequest struct {
	Cluster  string
	NumNodes int
	Region   string
	Zone     string
	CPUs     string
	Memory   string
	GPUs     int
	// FileMountDsts are the task's file_mounts destinations.
	FileMountDsts []string
	// Token is a deterministic idempotency key for this launch attempt.
	Token string
}

// InstanceState is what a provider reports about one instance.
type InstanceState string

// Instance states.
const (
	StateRunning    InstanceState = "running"
	StateStopped    InstanceState = "stopped"
	StateTerminated InstanceState = "terminated"
)

// Instance is one node as the provider sees it.
type Instance struct {
	ID     string
	Index  int // node index in the cluster; 0 is the head
	IP     string
	Region string
	Zone   string
	State  InstanceState
	CPUs   int
	GPUs   int
}

// PortRange is an inclusive range of TCP ports.
type PortRange struct{ From, To int }

// The typed errors, matched with errors.Is, that drive failover.
var (
	// ErrNoCapacity means the zone has no capacity: try the next zone.
	ErrNoCapacity = errors.New("no capacity")
	// ErrQuota means the account's quota is exhausted: try the next region.
	ErrQuota = errors.New("quota exceeded")
	// ErrCredentials means the provider cannot authenticate: try the next cloud.
	ErrCredentials = errors.New("invalid credentials")
	// ErrInvalidRequest means the request can never succeed: stop and tell the user.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrPreempted means an instance was taken back by the provider.
	ErrPreempted = errors.New("preempted")
)
