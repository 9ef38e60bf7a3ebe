package agent

import (
	"encoding/json"
	"fmt"
	"slices"
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
		if slices.ContainsFunc(j.spec.Nodes, func(n api.AgentNode) bool { return n.Rank == rank }) {
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
	url := a.cfg.CoordinatorURL + "/v1/agent/node-events"
	backoff := 200 * time.Millisecond
	for attempt := 1; attempt <= 8; attempt++ {
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
