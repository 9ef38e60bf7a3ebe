package agent

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	cpus := a.cfg.CPUs
	if cpus <= 0 {
		cpus = runtime.NumCPU()
	}
	writeJSON(w, http.StatusOK, api.AgentHealth{
		Version:    a.version,
		Cluster:    a.cfg.Cluster,
		Rank:       a.cfg.Rank,
		NodeID:     a.cfg.NodeID,
		ConfigHash: a.hash,
		PID:        os.Getpid(),
		CPUs:       cpus,
		GPUs:       a.gpus(),
		Jobs:       a.jobIDs(),
		Members:    a.members.Load().membersOrNil(),
	})
}

// jobIDs lists the jobs this agent process was handed, in ID order.
func (a *Agent) jobIDs() []int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]int64, 0, len(a.jobs))
	for id := range a.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// detectGPUs is cfg.GPUs when set, else the number of GPUs nvidia-smi
// lists, else 0. It runs once.
func (a *Agent) detectGPUs() int {
	if a.cfg.GPUs > 0 {
		return a.cfg.GPUs
	}
	bin, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--query-gpu=name", "--format=csv,noheader").Output()
	if err != nil {
		a.log.Warn("count GPUs with nvidia-smi failed; reporting 0", "err", err)
		return 0
	}
	return countLines(string(out))
}

func countLines(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}
