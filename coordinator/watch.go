package coordinator

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
	"github.com/sky-coord/sky-coord/coordinator/state"
	"github.com/sky-coord/sky-coord/providers"
)

const (
	// watchInterval is how often an UP cluster's agents are asked for
	// their health.
	watchInterval = 2 * time.Second
	// downAfter is how long an agent must fail its health checks before
	// it counts as down: one slow answer on a loaded machine is not a
	// dead node.
	downAfter = 3 * time.Second
)

// watcher keeps, per cluster, when its agents were last checked and since
// when each failing one has failed. It lives on the leader only; a new
// leader starts afresh, which merely delays a verdict by downAfter.
type watcher struct {
	mu      sync.Mutex
	last    map[string]time.Time
	failing map[string]map[int]time.Time
}

func newWatcher() *watcher {
	return &watcher{last: map[string]time.Time{}, failing: map[string]map[int]time.Time{}}
}

// due reports whether the cluster's agents should be checked now.
func (w *watcher) due(cluster string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.last[cluster]) < watchInterval {
		return false
	}
	w.last[cluster] = now
	return true
}

// observe records one check of a node and reports whether it is down.
func (w *watcher) observe(cluster string, rank int, healthy bool, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.failing[cluster]
	if healthy {
		delete(f, rank)
		return false
	}
	if f == nil {
		f = map[int]time.Time{}
		w.failing[cluster] = f
	}
	since, ok := f[rank]
	if !ok {
		f[rank] = now
		return false
	}
	return now.Sub(since) >= downAfter
}

func (w *watcher) forget(cluster string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.last, cluster)
	delete(w.failing, cluster)
}

// watch is the watch step of an UP cluster. It asks every agent for its
// health (at most every watchInterval). A job handed to the head that the
// head no longer knows was lost with an earlier agent process, and a job
// whose head is down has lost its driver: both end FAILED_DRIVER, as
// SkyPilot marks a job whose driver died. Agents that are down are
// brought back by bootstrap, which leaves healthy ones alone.
func (s *Server) watch(ctx context.Context, c *api.Cluster, p providers.Provider, jobs []*api.Job) {
	now := time.Now()
	if len(c.Nodes) == 0 || !s.watcher.due(c.Name, now) {
		return
	}
	if f, ok := p.(CoordinatorForwarder); ok {
		// Nodes that reach the coordinator through a tunnel get it back
		// after a coordinator restart or a dropped connection.
		for _, n := range c.Nodes {
			if _, err := f.ForwardCoordinator(ctx, providers.Instance{ID: n.InstanceID, Index: n.Rank, IP: n.IP}, s.addr); err != nil {
				s.log.Warn("forward the coordinator to a node", "cluster", c.Name, "node", n.Rank, "err", err)
			}
		}
	}
	token := s.agentToken(c.Name, c.Incarnation)
	healths := make([]*api.AgentHealth, len(c.Nodes))
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			healths[i], errs[i] = s.agents.health(ctx, n.AgentAddr, token)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	var down []int
	for i := range c.Nodes {
		if s.watcher.observe(c.Name, i, errs[i] == nil, now) {
			down = append(down, i)
		}
	}
	head := healths[0]
	for _, j := range jobs {
		if !j.Dispatched || j.Status.Terminal() {
			continue
		}
		switch {
		case head != nil && !slices.Contains(head.Jobs, j.ID):
			s.failJob(c.Name, j.ID, fmt.Errorf("the head node's agent restarted (now pid %d) and lost job %d; its processes were stopped", head.PID, j.ID))
		case head == nil && slices.Contains(down, 0):
			s.failJob(c.Name, j.ID, fmt.Errorf("lost contact with the head node %s: %v", c.Nodes[0].IP, errs[0]))
		}
	}
	if len(down) == 0 {
		return
	}
	insts, err := p.Describe(ctx, c.Name)
	if err != nil {
		s.event(c.Name, "Could not list the cluster's nodes (will retry): "+err.Error())
		return
	}
	var restart []providers.Instance
	for _, rank := range down {
		i := slices.IndexFunc(insts, func(in providers.Instance) bool { return in.Index == rank })
		if i < 0 || insts[i].State != providers.StateRunning {
			// The instance itself is gone (preempted, terminated): a
			// lost node, not a crashed agent.
			state := "gone"
			if i >= 0 {
				state = string(insts[i].State)
			}
			s.nodeLost(c.Name, rank, fmt.Sprintf("node %d (%s) is %s according to %s", rank, c.Nodes[rank].IP, state, p.Name()))
			continue
		}
		restart = append(restart, insts[i])
	}
	if len(restart) == 0 {
		return
	}
	s.event(c.Name, fmt.Sprintf("%d node agent(s) not answering (first: node %d, %v); restarting them.", len(restart), restart[0].Index, errs[restart[0].Index]))
	ips := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		ips[i] = n.IP
	}
	if err := s.bootstrapAll(ctx, c, p, restart, gossipPeers(ips)); err != nil {
		s.event(c.Name, "Could not restart the node agents (will retry): "+err.Error())
		return
	}
	s.event(c.Name, fmt.Sprintf("Restarted %d node agent(s).", len(restart)))
}

// confirmNodeLost checks an agent's report of a dead node with the
// provider: gossip cannot tell a dead machine from a dead agent. An
// instance that still runs had only its agent die, which the watch
// restarts; one that is gone is a lost node.
func (s *Server) confirmNodeLost(cluster string, rank int, reason string) {
	var c *api.Cluster
	s.read(func(st *state.Store) { c, _ = st.Cluster(cluster) })
	if c == nil || rank < 0 || rank >= len(c.Nodes) {
		return
	}
	p, err := s.provider(c.Cloud)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	insts, err := p.Describe(ctx, cluster)
	if err != nil {
		s.nodeLost(cluster, rank, reason) // the provider cannot vouch for it
		return
	}
	for _, in := range insts {
		if in.Index == rank && in.State == providers.StateRunning {
			s.log.Info("node reported lost, but its instance runs: the agent will be restarted", "cluster", cluster, "rank", rank, "reason", reason)
			return
		}
	}
	s.nodeLost(cluster, rank, reason)
}

// nodeLost records a dead node: the cluster goes INIT (degraded) and
// waits for `start` or a relaunch. A lost head takes its jobs' driver with
// it: they end FAILED_DRIVER.
func (s *Server) nodeLost(cluster string, rank int, reason string) {
	var c *api.Cluster
	var jobs []*api.Job
	s.read(func(st *state.Store) {
		c, _ = st.Cluster(cluster)
		jobs = st.ListJobs(cluster)
	})
	if c == nil || rank < 0 || rank >= len(c.Nodes) || c.Nodes[rank].Lost != "" || c.Desired != api.DesiredUp {
		return
	}
	if _, err := s.apply(fsm.NodeLostType, fsm.NodeLost{Cluster: cluster, Rank: rank, Reason: reason, At: time.Now().UTC()}); err != nil {
		s.log.Warn("record lost node", "cluster", cluster, "rank", rank, "err", err)
		return
	}
	s.event(cluster, fmt.Sprintf("Node %d lost: %s. The cluster is INIT (degraded): `sky-coord start %s` brings the node back; `sky-coord down %s` removes the cluster.", rank, reason, cluster, cluster))
	if rank == 0 {
		for _, j := range jobs {
			if j.Dispatched && !j.Status.Terminal() {
				s.failJob(cluster, j.ID, fmt.Errorf("the head node was lost: %s", reason))
			}
		}
	}
	s.ctrl.poke()
}
