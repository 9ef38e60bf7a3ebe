package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// job is a job the head was given: its pipeline, its run.log and the
// ordered queue of its state changes on their way to the coordinator.
type job struct {
	spec   api.AgentJob
	ctx    context.Context // cancelled with errCancelled or errShutdown
	stopFn context.CancelCauseFunc
	runLog *runLog
	events chan api.JobEvent // closed after the terminal event
	done   chan struct{}     // closed when terminal and run.log is complete

	mu     sync.Mutex
	status api.JobStatus
	ending bool // the pipeline is deciding the final state: cancel is too late
}

func (j *job) stop(cause error) { j.stopFn(cause) }

// report queues a state change; it never blocks (a job has at most four).
func (j *job) report(ev api.JobEvent) {
	j.mu.Lock()
	j.status = ev.Status
	j.mu.Unlock()
	j.events <- ev
	if ev.Status.Terminal() {
		close(j.events)
	}
}

func (a *Agent) handleSubmit(w http.ResponseWriter, r *http.Request) {
	var spec api.AgentJob
	if !readJSON(w, r, &spec) {
		return
	}
	if err := validateJob(spec); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("job %d: %w", spec.JobID, err))
		return
	}
	if spec.Cluster == "" {
		spec.Cluster = a.cfg.Cluster
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		writeError(w, http.StatusServiceUnavailable, errClosing)
		return
	}
	if _, ok := a.jobs[spec.JobID]; ok {
		// A retried submission: the job is already running or done.
		w.WriteHeader(http.StatusAccepted)
		return
	}
	rl, err := openRunLog(a.runLogPath(spec.LogDir), a.log)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("job %d: %w", spec.JobID, err))
		return
	}
	j := &job{
		spec:   spec,
		runLog: rl,
		events: make(chan api.JobEvent, 8),
		done:   make(chan struct{}),
		status: api.JobPending,
	}
	j.ctx, j.stopFn = context.WithCancelCause(a.ctx)
	a.jobs[spec.JobID] = j
	a.pipelines.Add(1)
	a.senders.Add(1)
	go a.sendEvents(j)
	go a.runPipeline(j)
	// Never the envs: they hold the secrets (SecretNames).
	a.log.Info("job accepted", "job", spec.JobID, "name", spec.Name, "nodes", len(spec.Nodes),
		"num_nodes", spec.NumNodes, "setup", spec.Setup != "", "blobs", len(spec.Blobs))
	w.WriteHeader(http.StatusAccepted)
}

func validateJob(j api.AgentJob) error {
	switch {
	case j.JobID <= 0:
		return errors.New("job_id must be positive")
	case j.LogDir == "" || !filepath.IsLocal(j.LogDir):
		return fmt.Errorf("log_dir %q must be a relative path below ~/sky_logs", j.LogDir)
	case len(j.Nodes) == 0:
		return errors.New("nodes is empty")
	case j.NumNodes < 1 || j.NumNodes > len(j.Nodes):
		return fmt.Errorf("num_nodes %d is not between 1 and the cluster's %d nodes", j.NumNodes, len(j.Nodes))
	}
	for k := range j.Envs {
		if !envName.MatchString(k) {
			return fmt.Errorf("environment variable name %q is not valid", k)
		}
	}
	return nil
}

func (a *Agent) runLogPath(logDir string) string {
	return filepath.Join(a.cfg.Home, "sky_logs", logDir, "run.log")
}

func (a *Agent) lookupJob(id int64) *job {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.jobs[id]
}

func jobID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("job id %q is not a number", r.PathValue("id"))
	}
	return id, nil
}

// handleCancel stops a job on every node. It answers once the job is
// terminal (CANCELLED, unless it had ended already). A job this agent
// does not know (it restarted) is killed on this node only, with 404.
func (a *Agent) handleCancel(w http.ResponseWriter, r *http.Request) {
	id, err := jobID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	j := a.lookupJob(id)
	if j == nil {
		a.killJob(id)
		writeError(w, http.StatusNotFound, fmt.Errorf("job %d is not known to this agent; its processes on this node were killed", id))
		return
	}
	j.mu.Lock()
	if !j.ending {
		a.log.Info("cancel job", "job", id)
		j.stop(errCancelled)
	}
	j.mu.Unlock()
	select {
	case <-j.done:
		w.WriteHeader(http.StatusNoContent)
	case <-r.Context().Done():
	}
}

// sendEvents delivers a job's events to the coordinator, in order.
func (a *Agent) sendEvents(j *job) {
	defer a.senders.Done()
	for ev := range j.events {
		a.deliver(ev)
	}
}

// deliver posts ev until the coordinator accepts it, backing off from
// 100 ms to 10 s. It gives up only when the agent stops, or on an answer
// that cannot change (4xx other than 408 and 429).
func (a *Agent) deliver(ev api.JobEvent) {
	log := a.log.With("job", ev.JobID, "status", ev.Status)
	body, err := json.Marshal(ev)
	if err != nil {
		log.Error("encode job event; event lost", "err", err)
		return
	}
	bases := a.coordinators()
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		i := (int(a.goodCoord.Load()) + attempt - 1) % len(bases)
		url := bases[i] + "/v1/agent/job-events"
		retry, err := a.postEvent(url, body)
		if err == nil {
			a.goodCoord.Store(int32(i)) // start there next time
			log.Debug("job event delivered")
			return
		}
		if !retry {
			log.Error("coordinator refused job event; event lost", "err", err)
			return
		}
		log.Warn("deliver job event failed; retrying", "attempt", attempt, "in", backoff, "err", err)
		select {
		case <-a.ctx.Done():
			log.Error("agent stopped before the job event was delivered", "err", err)
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (a *Agent) postEvent(url string, body []byte) (retry bool, err error) {
	timeout := 30 * time.Second
	if len(a.cfg.CoordinatorURLs) > 1 {
		// Another replica can take it: do not wait long on one that
		// hangs (frozen, cut off).
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(a.ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	api.SetToken(req, a.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return true, err
	}
	defer api.CloseBody(resp.Body)
	switch {
	case resp.StatusCode/100 == 2:
		return false, nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return false, errors.New(responseError(resp))
	default:
		return true, errors.New(responseError(resp))
	}
}

// coordinators are the coordinator replicas' base URLs, CoordinatorURL
// first; reports rotate through them while one fails, starting from the
// one that last took a report (goodCoord).
func (a *Agent) coordinators() []string {
	out := []string{strings.TrimRight(a.cfg.CoordinatorURL, "/")}
	for _, u := range a.cfg.CoordinatorURLs {
		u = strings.TrimRight(u, "/")
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}
