package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/procscan"
)

// proc is a running job process: the leader of its own process group
// (and session), started under a pty by execute.
type proc struct {
	pid  int
	done chan struct{} // closed once the leader is reaped
}

// killedRefusal is how long a node refuses to start processes of a job
// it killed, so a late exec cannot outrun a kill. Job ids are never
// reused within a cluster.
const killedRefusal = time.Minute

// jobEnv is the SKY_COORD_JOB entry of every process of a job.
func (a *Agent) jobEnv(jobID int64) string {
	return "SKY_COORD_JOB=" + a.cfg.Marker + "/" + strconv.FormatInt(jobID, 10)
}

// mayStart fails when the job was killed here or the agent is closing.
func (a *Agent) mayStart(jobID int64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mayStartLocked(jobID)
}

func (a *Agent) mayStartLocked(jobID int64) error {
	if a.closing {
		return errClosing
	}
	if t, ok := a.killed[jobID]; ok && time.Since(t) < killedRefusal {
		return fmt.Errorf("job %d was killed on this node: %w", jobID, errJobKilled)
	}
	return nil
}

// track registers a started process; it fails (see mayStart) when the job
// was killed here in the meantime, or the agent is closing.
func (a *Agent) track(jobID int64, pid int) (*proc, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.mayStartLocked(jobID); err != nil {
		return nil, err
	}
	p := &proc{pid: pid, done: make(chan struct{})}
	if a.procs[jobID] == nil {
		a.procs[jobID] = map[int]*proc{}
	}
	a.procs[jobID][pid] = p
	return p, nil
}

func (a *Agent) untrack(jobID int64, p *proc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.procs[jobID], p.pid)
	if len(a.procs[jobID]) == 0 {
		delete(a.procs, jobID)
	}
}

// terminate stops p's process group: SIGTERM, then SIGKILL once the
// leader is gone (for members left behind) or after the grace period.
func (a *Agent) terminate(p *proc) {
	_ = syscall.Kill(-p.pid, syscall.SIGTERM) // ESRCH: already gone
	t := time.NewTimer(a.grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	}
	_ = syscall.Kill(-p.pid, syscall.SIGKILL) // ESRCH: nothing left
}

// killJob kills every process of job id on this node: the process groups
// it started, and any process carrying the job's SKY_COORD_JOB entry that
// left its group. It returns once they are gone, or after the grace
// period and a SIGKILL.
func (a *Agent) killJob(jobID int64) {
	a.mu.Lock()
	a.killed[jobID] = time.Now()
	var ps []*proc
	for _, p := range a.procs[jobID] {
		ps = append(ps, p)
	}
	a.mu.Unlock()
	a.killMatching(ps, a.jobEnv(jobID))
}

// killAll kills every job process of this node: every group it started
// and every process carrying this node's SKY_COORD_NODE marker, except
// the agent itself and its ancestors.
func (a *Agent) killAll() {
	a.mu.Lock()
	var ps []*proc
	for _, m := range a.procs {
		for _, p := range m {
			ps = append(ps, p)
		}
	}
	a.mu.Unlock()
	a.killMatching(ps, api.MarkerEnv+"="+a.cfg.Marker)
}

func (a *Agent) killMatching(ps []*proc, envEntry string) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); a.terminate(p) }()
	}
	skip := selfAndAncestors()
	scan := func() []int {
		return slices.DeleteFunc(procscan.WithEnv(envEntry), func(pid int) bool { return slices.Contains(skip, pid) })
	}
	left := scan()
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGTERM) // ESRCH: already gone
	}
	deadline := time.Now().Add(a.grace)
	for len(left) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		left = scan()
	}
	for _, pid := range left {
		a.log.Warn("SIGKILL a job process that outlived SIGTERM", "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	wg.Wait()
}

// selfAndAncestors lists this process and its parents, which carry the
// node marker too but are not job processes.
func selfAndAncestors() []int {
	pids := []int{os.Getpid()}
	for pid := os.Getppid(); pid > 1 && len(pids) < 64; pid = procscan.Parent(pid) {
		pids = append(pids, pid)
	}
	return pids
}

func (a *Agent) handleKill(w http.ResponseWriter, r *http.Request) {
	var req api.NodeKillRequest
	if !readJSON(w, r, &req) {
		return
	}
	a.log.Info("kill job processes", "job", req.JobID)
	a.killJob(req.JobID)
	w.WriteHeader(http.StatusNoContent)
}

// killOnNodes kills job id on every node in nodes (in parallel) and
// returns once each answered or ctx ended; failures are logged.
func (a *Agent) killOnNodes(ctx context.Context, nodes []api.AgentNode, jobID int64) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.node(n).kill(ctx, jobID); err != nil {
				a.log.Warn("kill job on node failed", "job", jobID, "node", n.Rank, "ip", n.IP, "err", err)
			}
		}()
	}
	wg.Wait()
}
