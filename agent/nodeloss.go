package agent

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// nodeLostError stops a job whose node died.
type nodeLostError struct {
	rank   int
	reason string
}

func (e *nodeLostError) Error() string { return e.reason }

// nodeLost is called when gossip declares a node dead. The head stops
// every job that ran on it and tells the coordinator; when the head
// itself is lost, the lowest-ranked live worker tells the coordinator.
func (a *Agent) nodeLost(meta api.NodeMeta, reason string) {
	if a.cfg.Rank == 0 {
		a.stopJobsOn(meta.Rank, reason)
		a.reportNode(meta, reason)
		return
	}
	if meta.Rank != 0 {
		return // the head reports workers
	}
	for _, m := range a.members.Load().membersOrNil() {
		if m.Rank != 0 {
			if m.Rank == a.cfg.Rank {
				a.reportNode(meta, reason)
			}
			return
		}
	}
}

// stopJobsOn stops the head's unfinished jobs that use node rank.
func (a *Agent) stopJobsOn(rank int, reason string) {
	a.mu.Lock()
	var hit []*job
	for _, j := range a.jobs {
		j.mu.Lock()
		uses := slices.ContainsFunc(j.spec.Nodes, func(n api.AgentNode) bool { return n.Rank == rank })
		j.mu.Unlock()
		if uses {
			hit = append(hit, j)
		}
	}
	a.mu.Unlock()
	for _, j := range hit {
		j.mu.Lock()
		ending := j.ending || j.status.Terminal()
		j.mu.Unlock()
		if !ending {
			a.log.Warn("stopping job: a node was lost", "job", j.spec.JobID, "node", rank, "reason", reason)
			j.stop(&nodeLostError{rank: rank, reason: reason})
		}
	}
}

// reportNode tells the coordinator that a node was lost, retrying while
// the coordinator is unreachable.
func (a *Agent) reportNode(meta api.NodeMeta, reason string) {
	body, _ := json.Marshal(api.NodeEvent{Cluster: a.cfg.Cluster, Rank: meta.Rank, NodeID: meta.ID, IP: meta.IP,
		Lost: true, Reason: reason, Reporter: a.cfg.Rank})
	bases := a.coordinators()
	backoff := 200 * time.Millisecond
	for attempt := 1; attempt <= 8; attempt++ {
		url := bases[(attempt-1)%len(bases)] + "/v1/agent/node-events"
		retry, err := a.postEvent(url, body)
		if err == nil {
			return
		}
		if !retry {
			a.log.Error("coordinator refused node event", "node", meta.Rank, "err", err)
			return
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	a.log.Error("could not report a lost node to the coordinator", "node", meta.Rank, "reason", fmt.Sprint(reason))
}

// gossipWait bounds how long a job waits for its nodes to show in gossip
// (a fresh cluster's agents join within a second or so).
const gossipWait = 10 * time.Second

// gossipOrder takes the job's node list (head first, then workers by
// rank: the order behind SKYPILOT_NODE_IPS) from gossip: every node must
// be alive there, and its address is the one it announces. A node that
// does not show within gossipWait fails the job before anything runs,
// naming the node, instead of a gang that can never complete.
func (a *Agent) gossipOrder(j *job) error {
	m := a.members.Load()
	if m == nil {
		return nil
	}
	deadline := time.Now().Add(gossipWait)
	for {
		alive := map[int]api.NodeMeta{}
		for _, meta := range m.members() {
			alive[meta.Rank] = meta
		}
		var missing []string
		nodes := make([]api.AgentNode, 0, len(j.spec.Nodes))
		for _, n := range j.spec.Nodes {
			meta, ok := alive[n.Rank]
			if !ok {
				missing = append(missing, fmt.Sprintf("node %d (%s)", n.Rank, n.IP))
				continue
			}
			n.IP, n.Addr = meta.IP, meta.Addr
			nodes = append(nodes, n)
		}
		if len(missing) == 0 {
			slices.SortStableFunc(nodes, func(x, y api.AgentNode) int { return x.Rank - y.Rank })
			j.mu.Lock()
			j.spec.Nodes = nodes
			j.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) || j.ctx.Err() != nil {
			return fmt.Errorf("%s not in the cluster's gossip after %s (dead, or cut off from the head)", strings.Join(missing, ", "), gossipWait)
		}
		select {
		case <-j.ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
