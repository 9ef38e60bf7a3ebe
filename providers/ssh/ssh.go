// Package ssh is the provider of existing machines reached over SSH
// (on-prem servers, lab boxes): pools of them are listed in
// $SKY_COORD_HOME/ssh_node_pools.yaml, SkyPilot's format, and a task picks
// one with `infra: ssh/POOL`. Launch takes free machines of the pool (a
// machine runs one cluster at a time) and Terminate gives them back after
// removing what sky-coord put on them; the machines stay.
package ssh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sky-coord/sky-coord/bootstrap"
	"github.com/sky-coord/sky-coord/providers"
)

// Name is the provider's name, as in `infra: ssh/POOL`.
const Name = "ssh"

// Provider hands out machines of SSH node pools.
type Provider struct {
	// Home is SKY_COORD_HOME: the pools file is read from it and the
	// allocations are kept under Home/ssh/.
	Home string
	// PoolsFile overrides Home/ssh_node_pools.yaml.
	PoolsFile string
	// HostKeys pins host keys on first use; New sets a file store under
	// Home/ssh/. The coordinator may replace it with its state.
	HostKeys HostKeyStore
	// AcceptHint tells a user how to accept a changed host key ("{host}"
	// is host:port); "" uses bootstrap.DefaultAcceptHint.
	AcceptHint string
	// ConnectTimeout bounds each SSH connect (0: 10s).
	ConnectTimeout time.Duration
	Log            *slog.Logger

	// mu serializes registry changes within this process; a lock file
	// serializes them across processes.
	mu sync.Mutex

	connMu  sync.Mutex
	conns   map[string]*bootstrap.SSH // by host:port, for DialContext
	tunnels map[string]*bootstrap.SSH // by host:port: the connection carrying its coordinator tunnel
}

var (
	_ providers.Provider    = (*Provider)(nil)
	_ bootstrap.AgentDialer = (*Provider)(nil)
)

// New returns a provider for the SKY_COORD_HOME home.
func New(home string) *Provider {
	return &Provider{Home: home, HostKeys: &FileHostKeys{Path: filepath.Join(home, "ssh", "known_hosts.json")}}
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

func (p *Provider) poolsFile() string {
	if p.PoolsFile != "" {
		return p.PoolsFile
	}
	return filepath.Join(p.Home, PoolsFileName)
}

func (p *Provider) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

// Launch implements providers.Provider: node i of the cluster gets a free
// machine of the pool named by req.Region (the only pool when there is
// one and Region is ""). Machines already held are kept; all or none of
// the missing ones are taken.
func (p *Provider) Launch(ctx context.Context, req providers.LaunchRequest) ([]providers.Instance, error) {
	if req.NumNodes < 1 {
		return nil, fmt.Errorf("launch cluster %q: %d nodes: %w", req.Cluster, req.NumNodes, providers.ErrInvalidRequest)
	}
	pools, err := LoadPools(p.poolsFile())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, providers.ErrInvalidRequest)
	}
	var out []providers.Instance
	err = p.update(func(r *registry) (bool, error) {
		held := r.ofCluster(req.Cluster)
		pool, err := pickPool(pools, req, held)
		if err != nil {
			return false, err
		}
		have := map[int]*allocation{}
		for _, a := range held {
			have[a.Index] = a
		}
		var missing []int
		for i := 0; i < req.NumNodes; i++ {
			if have[i] == nil {
				missing = append(missing, i)
			}
		}
		var free []Host
		for _, h := range pool.Hosts {
			if r.Hosts[h.Addr()] == nil {
				free = append(free, h)
			}
		}
		if len(free) < len(missing) {
			return false, noCapacity(pool, r, req.Cluster, len(missing), len(free))
		}
		for j, i := range missing {
			a := &allocation{Cluster: req.Cluster, Index: i, Pool: pool.Name, Host: free[j], State: providers.StateRunning}
			r.Hosts[a.Host.Addr()] = a
			have[i] = a
		}
		for i := 0; i < req.NumNodes; i++ {
			have[i].State = providers.StateRunning
			out = append(out, have[i].instance())
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func pickPool(pools *Pools, req providers.LaunchRequest, held []*allocation) (*Pool, error) {
	name := req.Region
	if name == "" && len(held) > 0 {
		name = held[0].Pool
	}
	if name == "" {
		switch len(pools.Order) {
		case 0:
		case 1:
			name = pools.Order[0]
		default:
			return nil, fmt.Errorf("cluster %q: say which SSH node pool to use with infra: ssh/POOL; pools in %s: %s: %w",
				req.Cluster, pools.File, strings.Join(pools.Names(), ", "), providers.ErrInvalidRequest)
		}
	}
	if len(pools.Order) == 0 {
		return nil, fmt.Errorf("cluster %q: no SSH node pools are defined; list your machines in %s (pool name → user, identity_file, hosts): %w",
			req.Cluster, pools.File, providers.ErrInvalidRequest)
	}
	pool, ok := pools.ByName[name]
	if !ok {
		return nil, fmt.Errorf("cluster %q: no SSH node pool %q in %s; pools there: %s: %w",
			req.Cluster, name, pools.File, strings.Join(pools.Names(), ", "), providers.ErrInvalidRequest)
	}
	if len(held) > 0 && held[0].Pool != name {
		return nil, fmt.Errorf("cluster %q runs on SSH node pool %q, not %q; take it down first: %w",
			req.Cluster, held[0].Pool, name, providers.ErrInvalidRequest)
	}
	return pool, nil
}

func noCapacity(pool *Pool, r *registry, cluster string, need, free int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "SSH node pool %q has %d free of %d hosts and cluster %q needs %d more:", pool.Name, free, len(pool.Hosts), cluster, need)
	for _, h := range pool.Hosts {
		holder := "free"
		if a := r.Hosts[h.Addr()]; a != nil {
			holder = fmt.Sprintf("cluster %q node %d", a.Cluster, a.Index)
		}
		fmt.Fprintf(&b, "\n  %s (user %s): %s", h.Addr(), h.User, holder)
	}
	b.WriteString("\ntake a cluster down or add hosts to the pool")
	return fmt.Errorf("%s: %w", b.String(), providers.ErrNoCapacity)
}

// Describe implements providers.Provider.
func (p *Provider) Describe(_ context.Context, cluster string) ([]providers.Instance, error) {
	r, err := p.read()
	if err != nil {
		return nil, err
	}
	var out []providers.Instance
	for _, a := range r.ofCluster(cluster) {
		out = append(out, a.instance())
	}
	return out, nil
}

// Stop implements providers.Provider: the agent and every job process on
// the cluster's machines are stopped; files stay, the machines stay held.
func (p *Provider) Stop(ctx context.Context, cluster string) error {
	r, err := p.read()
	if err != nil {
		return err
	}
	held := r.ofCluster(cluster)
	errs := p.eachHost(ctx, held, func(ctx context.Context, a *allocation, t *bootstrap.SSH) error {
		return bootstrap.Stop(ctx, t)
	})
	var failed []error
	for i, a := range held {
		if errs[i] != nil {
			failed = append(failed, fmt.Errorf("stop node %d of cluster %q (%s): %w", a.Index, cluster, a.Host.Addr(), errs[i]))
		}
	}
	if err := p.setState(cluster, held, errs, providers.StateStopped); err != nil {
		return err
	}
	return errors.Join(failed...)
}

// Start implements providers.Provider: the machines are marked running;
// bootstrap starts the agents again.
func (p *Provider) Start(_ context.Context, cluster string) ([]providers.Instance, error) {
	var out []providers.Instance
	err := p.update(func(r *registry) (bool, error) {
		held := r.ofCluster(cluster)
		if len(held) == 0 {
			return false, fmt.Errorf("cluster %q holds no machines of an SSH node pool to start: %w", cluster, providers.ErrInvalidRequest)
		}
		for _, a := range held {
			a.State = providers.StateRunning
			out = append(out, a.instance())
		}
		return true, nil
	})
	return out, err
}

// Terminate implements providers.Provider: on each machine the agent and
// job processes are stopped and sky-coord's files removed
// (bootstrap.Remove), then the machine is released. A machine that
// cannot be reached at all (down, cut off) is released without cleaning,
// and so is one no longer listed in the pools file; any other failure
// keeps it held, to be retried.
func (p *Provider) Terminate(ctx context.Context, cluster string) error {
	r, err := p.read()
	if err != nil {
		return err
	}
	held := r.ofCluster(cluster)
	if len(held) == 0 {
		return nil
	}
	pools, perr := LoadPools(p.poolsFile())
	errs := p.eachHost(ctx, held, func(ctx context.Context, a *allocation, t *bootstrap.SSH) error {
		return bootstrap.Remove(ctx, t)
	})
	var failed []error
	for i, a := range held {
		err := errs[i]
		switch {
		case err == nil:
		case unreachable(err):
			p.log().Warn("releasing an SSH pool machine that cannot be reached; what sky-coord put on it stays",
				"cluster", cluster, "host", a.Host.Addr(), "err", err)
			errs[i] = nil
		case perr == nil && !listed(pools, a):
			p.log().Warn("releasing a machine no longer in its SSH node pool without cleaning it",
				"cluster", cluster, "host", a.Host.Addr(), "err", err)
			errs[i] = nil
		default:
			failed = append(failed, fmt.Errorf("terminate node %d of cluster %q: clean %s: %w; fix access to the machine, or remove it from %s to release it without cleaning",
				a.Index, cluster, a.Host.Addr(), err, p.poolsFile()))
		}
	}
	if err := p.update(func(r *registry) (bool, error) {
		for i, a := range held {
			if errs[i] == nil && r.Hosts[a.Host.Addr()] != nil && r.Hosts[a.Host.Addr()].Cluster == cluster {
				delete(r.Hosts, a.Host.Addr())
			}
		}
		return true, nil
	}); err != nil {
		return err
	}
	p.dropConns(held)
	return errors.Join(failed...)
}

// OpenPorts implements providers.Provider: pool machines are not behind a
// firewall sky-coord manages.
func (p *Provider) OpenPorts(context.Context, string, []providers.PortRange) error { return nil }

// setState records state for the allocations whose step succeeded.
func (p *Provider) setState(cluster string, held []*allocation, errs []error, state providers.InstanceState) error {
	return p.update(func(r *registry) (bool, error) {
		for i, a := range held {
			if errs[i] == nil {
				if cur := r.Hosts[a.Host.Addr()]; cur != nil && cur.Cluster == cluster {
					cur.State = state
				}
			}
		}
		return true, nil
	})
}

func listed(pools *Pools, a *allocation) bool {
	pool := pools.ByName[a.Pool]
	if pool == nil {
		return false
	}
	for _, h := range pool.Hosts {
		if h.Addr() == a.Host.Addr() {
			return true
		}
	}
	return false
}

// unreachable reports an error of the network itself: nothing answered.
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

// eachHost connects to every allocation's machine in parallel and runs fn.
func (p *Provider) eachHost(ctx context.Context, held []*allocation, fn func(context.Context, *allocation, *bootstrap.SSH) error) []error {
	errs := make([]error, len(held))
	var wg sync.WaitGroup
	for i, a := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t, err := p.dial(ctx, a.Host)
			if err != nil {
				errs[i] = err
				return
			}
			defer t.Close()
			errs[i] = fn(ctx, a, t)
		}()
	}
	wg.Wait()
	return errs
}
