package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/bootstrap"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
	"github.com/sky-coord/sky-coord/coordinator/state"
	"github.com/sky-coord/sky-coord/providers"
)

// reconcile takes the next step for one cluster (see controller).
func (s *Server) reconcile(ctx context.Context, name string) {
	var c *api.Cluster
	var jobs []*api.Job
	s.read(func(st *state.Store) {
		c, _ = st.Cluster(name)
		jobs = st.ListJobs(name)
	})
	if c == nil {
		return
	}
	switch {
	case c.Desired == api.DesiredDown:
		s.teardown(ctx, c)
		return
	case c.Error != "":
		// A failed launch waits for the user: relaunch, start or down.
		return
	case c.Desired == api.DesiredUp && c.Status == api.ClusterInit && len(c.Nodes) == 0:
		insts, p, ok := s.provision(ctx, c)
		if ok {
			s.provisioned(ctx, c, p, insts, time.Now())
		}
		return
	}
	p, err := s.provider(c.Cloud)
	if err != nil {
		s.event(name, err.Error())
		return
	}
	switch {
	case c.Desired == api.DesiredStopped && c.Status != api.ClusterStopped:
		s.stopCluster(ctx, c, p)
	case c.Desired == api.DesiredUp && c.Status == api.ClusterInit && state.Degraded(c):
		// A node was lost: the cluster waits for `start` or a relaunch.
	case c.Desired == api.DesiredUp && c.Status == api.ClusterInit:
		s.bringUp(ctx, c, p, false)
	case c.Desired == api.DesiredUp && c.Status == api.ClusterStopped:
		s.bringUp(ctx, c, p, true)
	case c.Desired == api.DesiredUp && c.Status == api.ClusterUp:
		s.watch(ctx, c, p, jobs)
		s.dispatch(ctx, c, jobs)
		s.autostop(ctx, c)
	}
}

func (s *Server) provider(cloud string) (providers.Provider, error) {
	if cloud == "" {
		cloud = "local"
	}
	p, ok := s.cfg.Providers[cloud]
	if !ok {
		return nil, fmt.Errorf("cloud %q is not enabled on this coordinator (enabled: %s)", cloud, strings.Join(s.providerNames(), ", "))
	}
	return p, nil
}

func (s *Server) providerNames() []string {
	var names []string
	for n := range s.cfg.Providers {
		names = append(names, n)
	}
	return names
}

// event records a progress line for a cluster; a failure to record one is
// only logged, as the step it describes has already happened.
func (s *Server) event(cluster, msg string) {
	if _, err := s.apply(fsm.ClusterEventType, fsm.ClusterEvent{Cluster: cluster, Message: msg, At: time.Now().UTC()}); err != nil {
		s.log.Warn("record cluster event", "cluster", cluster, "err", err)
	}
}

// bringUp brings back a cluster whose nodes are recorded: a restart
// (`start`) or a launch whose bootstrap did not finish. It stays where the
// nodes are; there is no failover for a cluster that exists.
func (s *Server) bringUp(ctx context.Context, c *api.Cluster, p providers.Provider, restart bool) {
	start := time.Now()
	var insts []providers.Instance
	var err error
	if restart {
		s.event(c.Name, fmt.Sprintf("Starting %d node(s) on %s.", c.NumNodes, c.Infra))
		insts, err = p.Start(ctx, c.Name)
	} else {
		insts, err = p.Launch(ctx, providers.LaunchRequest{
			Cluster: c.Name, NumNodes: c.NumNodes, Region: c.Region, Zone: c.Zone,
			CPUs: c.Requested.CPUs, Memory: c.Requested.Memory,
			Token: fmt.Sprintf("%s-%d-%d", c.Name, c.Incarnation, len(c.Attempts)),
		})
	}
	if err == nil && len(insts) < c.NumNodes {
		err = fmt.Errorf("provider %s returned %d of %d nodes", p.Name(), len(insts), c.NumNodes)
	}
	if err != nil {
		s.launchFailed(ctx, c.Name, fmt.Errorf("provision: %w", err))
		return
	}
	s.provisioned(ctx, c, p, insts, start)
}

// provisioned records a cluster's instances, bootstraps their agents and
// marks the cluster UP.
func (s *Server) provisioned(ctx context.Context, c *api.Cluster, p providers.Provider, insts []providers.Instance, start time.Time) {
	nodes := make([]api.Node, len(insts))
	region, zone := c.Region, c.Zone
	for i, in := range insts {
		nodes[i] = api.Node{Rank: in.Index, InstanceID: in.ID, IP: in.IP,
			AgentAddr: net.JoinHostPort(in.IP, strconv.Itoa(api.AgentPort)), CPUs: in.CPUs, GPUs: in.GPUs}
		if in.Region != "" {
			region, zone = in.Region, in.Zone
		}
	}
	if _, err := s.apply(fsm.NodesRecordedType, fsm.NodesRecorded{Cluster: c.Name, Incarnation: c.Incarnation, Nodes: nodes,
		Cloud: p.Name(), Region: region, Zone: zone, At: time.Now().UTC()}); err != nil {
		s.log.Warn("record nodes", "cluster", c.Name, "err", err)
		return
	}
	s.event(c.Name, fmt.Sprintf("Provisioned %d node(s) in %s.", len(nodes), time.Since(start).Round(time.Millisecond)))
	s.pause(ctx, "bootstrap")
	if ctx.Err() != nil {
		return
	}

	ips := make([]string, len(insts))
	for i, in := range insts {
		ips[i] = in.IP
	}
	if err := s.bootstrapAll(ctx, c, p, insts, gossipPeers(ips)); err != nil {
		s.launchFailed(ctx, c.Name, err)
		return
	}
	if _, err := s.apply(fsm.ClusterStatusType, fsm.ClusterStatusSet{Cluster: c.Name, Status: api.ClusterUp, At: time.Now().UTC()}); err != nil {
		s.log.Warn("record cluster up", "cluster", c.Name, "err", err)
		return
	}
	s.event(c.Name, fmt.Sprintf("Cluster %s is UP (%s).", c.Name, time.Since(start).Round(time.Millisecond)))
}

func (s *Server) launchFailed(ctx context.Context, cluster string, err error) {
	if ctx.Err() != nil {
		return // shutting down: the next leader resumes the launch
	}
	// The failure is recorded before its event, so a client woken by the
	// event finds the cluster's error already set.
	if _, aerr := s.apply(fsm.LaunchFailedType, fsm.LaunchFailed{Cluster: cluster, Reason: err.Error(), At: time.Now().UTC()}); aerr != nil {
		s.log.Warn("record launch failure", "cluster", cluster, "err", aerr)
	}
	s.event(cluster, "Launch failed: "+err.Error())
}

// gossipPeers are the gossip addresses of a cluster's nodes, head first.
func gossipPeers(ips []string) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = net.JoinHostPort(ip, strconv.Itoa(api.GossipPort))
	}
	return out
}

// bootstrapAll brings the agents of insts up in parallel; peers are the
// gossip addresses of all the cluster's nodes.
func (s *Server) bootstrapAll(ctx context.Context, c *api.Cluster, p providers.Provider, insts []providers.Instance, peers []string) error {
	conn, ok := p.(Connector)
	if !ok {
		return fmt.Errorf("provider %s cannot reach its nodes to install the agent", p.Name())
	}
	token := s.agentToken(c.Name, c.Incarnation)
	errs := make([]error, len(insts))
	var wg sync.WaitGroup
	for i, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.bootstrapNode(ctx, c, conn, in, token, peers)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) bootstrapNode(ctx context.Context, c *api.Cluster, conn Connector, in providers.Instance, token string, peers []string) error {
	t, err := conn.Transport(ctx, in)
	if err != nil {
		return fmt.Errorf("node %d (%s): connect: %w", in.Index, in.IP, err)
	}
	defer t.Close()
	addr := net.JoinHostPort(in.IP, strconv.Itoa(api.AgentPort))
	coordURL := "http://" + s.addr
	replicas := s.replicaURLs()
	if len(replicas) > 0 {
		coordURL = replicas[0]
	}
	if f, ok := conn.(CoordinatorForwarder); ok {
		replicas = nil // the node reaches the coordinator through its tunnel
		if coordURL, err = f.ForwardCoordinator(ctx, in, s.addr); err != nil {
			return fmt.Errorf("node %d (%s): forward the coordinator to it: %w", in.Index, in.IP, err)
		}
	}
	cfg := api.AgentConfig{
		Cluster: c.Name, Rank: in.Index, NodeID: in.ID, IP: in.IP, Bind: addr,
		Home: t.Home(), CoordinatorURL: coordURL, CoordinatorURLs: replicas, Token: token,
		Marker: t.Home(), CPUs: in.CPUs, GPUs: in.GPUs,
		GossipBind: net.JoinHostPort(in.IP, strconv.Itoa(api.GossipPort)),
		GossipKey:  s.gossipKey(c.Name, c.Incarnation), Peers: peers,
	}
	if pm, ok := conn.(privateMounter); ok {
		cfg.PrivateMounts = pm.PrivateFileMounts()
	}
	if cm, ok := conn.(coordinatorMachine); ok && cm.OnCoordinatorMachine() {
		if dir, err := filepath.Abs(s.chunks.Dir()); err == nil {
			cfg.ChunkDir = dir
		}
	}
	if ts, ok := conn.(treeSharer); ok {
		cfg.TreeDir = ts.SharedTreeDir(c.Name)
	}
	_, err = bootstrap.Ensure(ctx, t, bootstrap.Node{
		Name:          fmt.Sprintf("node %d (%s)", in.Index, in.IP),
		AgentBinary:   s.cfg.AgentBinary,
		AgentBinaries: s.cfg.AgentBinaries,
		Config:        cfg,
		Health:        func(ctx context.Context) (*api.AgentHealth, error) { return s.agents.health(ctx, addr, token) },
	})
	return err
}

func (s *Server) stopCluster(ctx context.Context, c *api.Cluster, p providers.Provider) {
	if !s.flushMounts(ctx, c) {
		return
	}
	if err := p.Stop(ctx, c.Name); err != nil {
		s.event(c.Name, "Stop failed (will retry): "+err.Error())
		return
	}
	if _, err := s.apply(fsm.ClusterStatusType, fsm.ClusterStatusSet{Cluster: c.Name, Status: api.ClusterStopped, At: time.Now().UTC()}); err != nil {
		s.log.Warn("record cluster stopped", "cluster", c.Name, "err", err)
		return
	}
	s.event(c.Name, fmt.Sprintf("Cluster %s is STOPPED.", c.Name))
}

// teardown terminates a cluster's instances on every cloud an attempt
// touched and forgets the cluster only once the providers confirm that
// none is left.
func (s *Server) teardown(ctx context.Context, c *api.Cluster) {
	if !s.flushMounts(ctx, c) {
		return
	}
	clouds := append([]string(nil), c.Clouds...)
	if c.Cloud != "" && !slices.Contains(clouds, c.Cloud) {
		clouds = append(clouds, c.Cloud)
	}
	for _, cloud := range clouds {
		p, err := s.provider(cloud)
		if err != nil {
			continue // nothing can have been created where no provider is
		}
		if err := p.Terminate(ctx, c.Name); err != nil {
			s.event(c.Name, "Terminate failed (will retry): "+err.Error())
			return
		}
		left, err := p.Describe(ctx, c.Name)
		if err != nil {
			s.event(c.Name, "Terminate: could not confirm (will retry): "+err.Error())
			return
		}
		for _, in := range left {
			if in.State != providers.StateTerminated {
				s.event(c.Name, fmt.Sprintf("Terminate: node %d (%s) is still %s (will retry).", in.Index, in.ID, in.State))
				return
			}
		}
	}
	s.deleteEphemeralStorages(ctx, c.Name)
	if _, err := s.apply(fsm.ClusterRemovedType, fsm.ClusterRemoved{Cluster: c.Name}); err != nil {
		s.log.Warn("record cluster removed", "cluster", c.Name, "err", err)
	}
	s.watcher.forget(c.Name)
}
