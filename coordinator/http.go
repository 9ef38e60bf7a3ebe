package coordinator

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
	"github.com/sky-coord/sky-coord/coordinator/state"
	"github.com/sky-coord/sky-coord/transfer"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	user := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.requireUser(h)) }
	user("GET /v1/health", s.handleHealth)
	user("POST /v1/launch", s.handleLaunch)
	user("POST /v1/plan", s.handlePlan)
	user("GET /v1/check", s.handleCheck)
	user("GET /v1/ssh-keys", s.handleHostKeys)
	user("GET /v1/storage", s.handleStorages)
	user("DELETE /v1/storage/{name}", s.handleStorageDelete)
	user("POST /v1/ssh-keys/forget", s.handleForgetHostKey)
	user("GET /v1/clusters", s.handleClusters)
	user("GET /v1/clusters/{name}", s.handleCluster)
	user("POST /v1/clusters/{name}/exec", s.handleExec)
	user("POST /v1/clusters/{name}/stop", s.handleDesired(api.DesiredStopped))
	user("POST /v1/clusters/{name}/start", s.handleDesired(api.DesiredUp))
	user("POST /v1/clusters/{name}/down", s.handleDesired(api.DesiredDown))
	user("GET /v1/clusters/{name}/jobs", s.handleJobs)
	user("GET /v1/clusters/{name}/jobs/{id}", s.handleJob)
	user("GET /v1/clusters/{name}/jobs/{id}/log", s.handleLog)
	user("POST /v1/clusters/{name}/cancel", s.handleCancel)
	user("GET /v1/clusters/{name}/events", s.handleEvents)
	user("GET /v1/clusters/{name}/shell", s.handleShell)
	user("POST /v1/clusters/{name}/autostop", s.handleAutostop)
	user("POST /v1/shutdown", s.handleShutdown)
	user("GET /v1/cluster/self", s.handleSelf)
	user("POST /v1/cluster/join", s.handleJoin)
	user("GET /v1/cluster/members", s.handleMembers)
	user("GET /v1/chunk-store", s.handleChunkStore)
	// Agents authenticate with their cluster's token.
	mux.Handle("/v1/chunks/", s.chunkHandler())
	mux.HandleFunc("POST /v1/agent/job-events", s.handleJobEvent)
	mux.HandleFunc("POST /v1/agent/node-events", s.handleNodeEvent)
	mux.HandleFunc("GET /v1/agent/binaries/sky-mount", s.handleMountBinary)
	return mux
}

func tokenEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (s *Server) requireUser(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !tokenEqual(api.RequestToken(r), s.cfg.Token) {
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong API token; the CLI reads it from $SKY_COORD_HOME/token"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// agentAuthorized accepts the user token or the token of a live cluster
// (any cluster when cluster is empty).
func (s *Server) agentAuthorized(r *http.Request, cluster string) bool {
	tok := api.RequestToken(r)
	if tokenEqual(tok, s.cfg.Token) {
		return true
	}
	ok := false
	s.read(func(st *state.Store) {
		for name, c := range st.Clusters {
			if (cluster == "" || cluster == name) && tokenEqual(tok, s.agentToken(name, c.Incarnation)) {
				ok = true
				return
			}
		}
	})
	return ok
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.Error{Error: err.Error()})
}

// errStatus maps an error to its HTTP status.
func errStatus(err error) int {
	switch {
	case errors.Is(err, state.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, state.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrNotLeader):
		return http.StatusServiceUnavailable
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

var errBadRequest = errors.New("bad request")

// userError strips the sentinel suffix that wrapping adds for matching.
func userError(err error) error {
	msg := err.Error()
	for _, sfx := range []string{": " + state.ErrConflict.Error(), ": " + state.ErrNotFound.Error(), ": " + errBadRequest.Error()} {
		msg = strings.TrimSuffix(msg, sfx)
	}
	return errors.New(msg)
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	writeError(w, errStatus(err), userError(err))
}

func decodeBody(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("decode request body: %v: %w", err, errBadRequest)
	}
	return nil
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.ServerHealth{Version: s.cfg.Version, Leader: s.leading(), PID: os.Getpid()})
}

func (s *Server) handleShutdown(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct{}{})
	go s.Shutdown()
}

// chunkHandler serves the chunk store: users upload (PUT) and read,
// agents of live clusters only read.
func (s *Server) chunkHandler() http.Handler {
	h := http.StripPrefix("/v1/chunks", transfer.ChunkHandler(s.chunks, transfer.HandlerOptions{AllowPut: true}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := tokenEqual(api.RequestToken(r), s.cfg.Token)
		write := r.Method == http.MethodPut || strings.HasSuffix(r.URL.Path, "/put")
		if !user && (write || !s.agentAuthorized(r, "")) {
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong token"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// handleChunkStore says where this replica keeps chunks: a client on its
// machine, as its user, writes them there without the network.
func (s *Server) handleChunkStore(w http.ResponseWriter, r *http.Request) {
	dir, err := filepath.Abs(s.chunks.Dir())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ChunkStoreInfo{Dir: dir, ID: s.chunks.ID()})
}

// handleNodeEvent records a node an agent saw die (by gossip): the
// cluster is INIT (degraded) until `start` or a relaunch repairs it.
func (s *Server) handleNodeEvent(w http.ResponseWriter, r *http.Request) {
	var ev api.NodeEvent
	if err := decodeBody(r, &ev); err != nil {
		s.fail(w, err)
		return
	}
	if !s.agentAuthorized(r, ev.Cluster) {
		writeError(w, http.StatusUnauthorized, errors.New("missing or wrong token"))
		return
	}
	if !ev.Lost {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	go s.confirmNodeLost(ev.Cluster, ev.Rank, ev.Reason)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleJobEvent(w http.ResponseWriter, r *http.Request) {
	var ev api.JobEvent
	if err := decodeBody(r, &ev); err != nil {
		s.fail(w, err)
		return
	}
	if !s.agentAuthorized(r, ev.Cluster) {
		writeError(w, http.StatusUnauthorized, errors.New("missing or wrong token"))
		return
	}
	_, err := s.apply(fsm.JobTransitionType, fsm.JobTransition{Cluster: ev.Cluster, JobID: ev.JobID,
		Status: ev.Status, ExitCodes: ev.ExitCodes, Message: ev.Message, At: time.Now().UTC()})
	switch {
	case err == nil:
	case errors.Is(err, state.ErrConflict), errors.Is(err, state.ErrNotFound):
		// A late or repeated report: the recorded state stands. Answer OK
		// so the agent stops retrying.
		s.log.Info("ignored job event", "cluster", ev.Cluster, "job", ev.JobID, "status", ev.Status, "reason", err)
	default:
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) handleClusters(w http.ResponseWriter, r *http.Request) {
	var out []*api.Cluster
	s.read(func(st *state.Store) { out = st.ListClusters() })
	if out == nil {
		out = []*api.Cluster{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request) {
	var c *api.Cluster
	var err error
	s.read(func(st *state.Store) { c, err = st.Cluster(r.PathValue("name")) })
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) handleDesired(d api.Desired) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if _, err := s.apply(fsm.ClusterDesiredType, fsm.ClusterDesired{Cluster: name, Desired: d, At: time.Now().UTC()}); err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	}
}

func (s *Server) handleJobs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var jobs []*api.Job
	var err error
	s.read(func(st *state.Store) {
		if _, err = st.Cluster(name); err == nil {
			jobs = st.ListJobs(name)
		}
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	for _, j := range jobs {
		j.Task, j.Blobs = nil, nil // the queue does not carry task bodies (or secrets)
	}
	writeJSON(w, http.StatusOK, jobs)
}

func (s *Server) jobFromPath(r *http.Request) (*api.Job, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("job ID %q is not a number: %w", r.PathValue("id"), errBadRequest)
	}
	var j *api.Job
	s.read(func(st *state.Store) { j, err = st.Job(r.PathValue("name"), id) })
	return j, err
}

// handleJob answers one job. With ?wait=N it first waits, up to N
// seconds (at most 30), for the job to end: a client that saw the job's
// log end learns its final state as soon as it is recorded.
func (s *Server) handleJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.jobFromPath(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	if wait, _ := strconv.Atoi(r.URL.Query().Get("wait")); wait > 0 && !j.Status.Terminal() {
		ctx, cancel := context.WithTimeout(r.Context(), time.Duration(min(wait, 30))*time.Second)
		done, err := s.waitJob(ctx, j.Cluster, j.ID, func(j *api.Job) bool { return j.Status.Terminal() })
		cancel()
		switch {
		case err == nil:
			j = done
		case r.Context().Err() != nil:
			return // the client left
		case ctx.Err() == nil:
			s.fail(w, err) // the job is gone
			return
		default:
			// Still running when the wait ran out: its state now.
			if j, err = s.jobFromPath(r); err != nil {
				s.fail(w, err)
				return
			}
		}
	}
	j.Task, j.Blobs = nil, nil
	writeJSON(w, http.StatusOK, j)
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	var req api.CancelRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	res, err := s.apply(fsm.JobCancelType, fsm.JobCancel{Cluster: r.PathValue("name"), JobIDs: req.JobIDs, All: req.All, At: time.Now().UTC()})
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.CancelResponse{Cancelled: res.Cancelled})
}

// handleEvents long-polls a cluster's progress lines: it answers at once
// when there are events after `after`, else when one arrives or `wait`
// seconds pass.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	wait, _ := strconv.Atoi(r.URL.Query().Get("wait"))
	deadline := time.After(time.Duration(min(wait, 30)) * time.Second)
	for {
		ch := s.changes()
		var evs []api.ClusterEvent
		exists := false
		s.read(func(st *state.Store) {
			evs = st.EventsAfter(name, after)
			_, exists = st.Clusters[name]
		})
		// A removed cluster has no more events to wait for.
		if len(evs) > 0 || wait <= 0 || !exists {
			if evs == nil {
				evs = []api.ClusterEvent{}
			}
			writeJSON(w, http.StatusOK, evs)
			return
		}
		select {
		case <-ch:
		case <-deadline:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

// waitJob waits until cond holds for a job, or ctx ends.
func (s *Server) waitJob(ctx context.Context, cluster string, id int64, cond func(*api.Job) bool) (*api.Job, error) {
	for {
		ch := s.changes()
		var j *api.Job
		var err error
		s.read(func(st *state.Store) { j, err = st.Job(cluster, id) })
		if err != nil {
			return nil, err
		}
		if cond(j) {
			return j, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// handleMountBinary serves sky-mount for an agent's architecture
// (?arch=amd64): agents fetch it the first time a job mounts a bucket.
func (s *Server) handleMountBinary(w http.ResponseWriter, r *http.Request) {
	if !s.agentAuthorized(r, "") {
		writeError(w, http.StatusUnauthorized, errors.New("missing or wrong token"))
		return
	}
	arch := r.URL.Query().Get("arch")
	p, ok := s.cfg.MountBinaries[arch]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no sky-mount binary for %q on this coordinator; build it with `make build` (bin/sky-mount-linux-%s)", arch, arch))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeFile(w, r, p)
}
