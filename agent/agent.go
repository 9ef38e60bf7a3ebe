// Package agent is the node runtime, sky-agent: it serves the agent API
// (api/agent.go) on every node, and on the head (rank 0) it runs each
// job's pipeline across the cluster as SkyPilot's Ray driver does —
// sync → setup → run — reporting every state change to the coordinator.
//
// A job on the head:
//
//	POST /v1/jobs ──► sync (every node) ──► setup (every node) ──► run (Nodes[:NumNodes], a gang)
//	                      │ error               │ exit ≠ 0            │ all 0 ──► SUCCEEDED
//	                      ▼                     ▼                     │ one ≠ 0 ─► FAILED (others 137)
//	             FAILED / FAILED_SETUP     FAILED_SETUP               │
//	   cancel at any point ──► processes killed on every node ──► CANCELLED
//	   agent shut down     ──► processes killed on every node ──► FAILED_DRIVER
package agent

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/procscan"
	"github.com/sky-coord/sky-coord/transfer"
)

// Options are the optional parts of an Agent.
type Options struct {
	// Logger receives the agent's logs; slog.Default() when nil.
	Logger *slog.Logger
	// Version is reported by /v1/health.
	Version string
	// HTTPClient talks to the coordinator and to the other agents; a
	// client without an overall timeout (exec streams are long) when nil.
	HTTPClient *http.Client
	// KillGrace is the time between SIGTERM and SIGKILL when a job's
	// processes are killed; 2 s when zero.
	KillGrace time.Duration
}

// Agent is one node's runtime. Create it with New, run it with Serve.
type Agent struct {
	cfg     api.AgentConfig
	log     *slog.Logger
	version string
	client  *http.Client
	grace   time.Duration
	hash    string
	gpus    func() int

	// ctx lives until Serve returns; event delivery stops with it.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	jobs    map[int64]*job          // head: the jobs it was given
	procs   map[int64]map[int]*proc // running process groups, by job and pid
	killed  map[int64]time.Time     // jobs killed on this node, by when
	closing bool

	// chunks is this node's chunk store (~/.sky/chunks, or
	// AgentConfig.ChunkDir); chunkClient reaches other agents' and the
	// coordinator's with this node's token. syncMu makes this node's
	// syncs one at a time, so pruning the store after one cannot take
	// chunks from under another.
	chunks      *transfer.DiskStore
	chunkClient *http.Client
	syncMu      sync.Mutex
	// layers are the machine's copies under this node's views, as read
	// once (they never change), by directory; views are the mounts found
	// to be this node's views, by destination. Both guarded by syncMu.
	layers map[string]*transfer.Layer
	views  map[string]mountID
	// spares are records this node is done with, by destination, whose
	// memory the next sync there reuses (synced.go). Guarded by syncMu.
	spares map[string]*transfer.Record
	// synced is what this node last synced, by destination (synced.go);
	// manifests are the last few manifests it decoded. treesMu guards
	// both.
	treesMu   sync.Mutex
	synced    map[string]syncedTree
	manifests map[transfer.ChunkID]*transfer.Manifest

	// goodCoord indexes coordinators(): the replica that last took a
	// report.
	goodCoord atomic.Int32

	// buckets are the buckets this node mounted or copied; mounterMu
	// serializes fetching sky-mount.
	buckets   bucketMounts
	mounterMu sync.Mutex

	// members is this node's gossip view (nil without gossip).
	members atomic.Pointer[membership]

	pipelines sync.WaitGroup
	senders   sync.WaitGroup
	shutdown  chan struct{}
	shutOnce  sync.Once
}

// The causes a job's pipeline is stopped with.
var (
	errCancelled = errors.New("job cancelled")
	errShutdown  = errors.New("agent shutting down")
)

// New checks cfg and returns an agent for it.
func New(cfg api.AgentConfig, opts Options) (*Agent, error) {
	switch {
	case cfg.Token == "":
		return nil, errors.New("agent config: token is empty")
	case cfg.Home == "" || !filepath.IsAbs(cfg.Home):
		return nil, fmt.Errorf("agent config: home %q is not an absolute path", cfg.Home)
	case cfg.Marker == "":
		return nil, errors.New("agent config: marker is empty")
	case cfg.CoordinatorURL == "":
		return nil, errors.New("agent config: coordinator_url is empty")
	}
	a := &Agent{
		cfg:      cfg,
		log:      opts.Logger,
		version:  opts.Version,
		client:   opts.HTTPClient,
		grace:    opts.KillGrace,
		hash:     cfg.Hash(),
		jobs:     map[int64]*job{},
		procs:    map[int64]map[int]*proc{},
		killed:   map[int64]time.Time{},
		shutdown: make(chan struct{}),
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("component", "agent", "cluster", cfg.Cluster, "rank", cfg.Rank)
	if a.client == nil {
		a.client = &http.Client{Transport: &http.Transport{
			Proxy:               nil, // agents talk on the cluster's own network
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	if a.grace <= 0 {
		a.grace = 2 * time.Second
	}
	a.gpus = sync.OnceValue(a.detectGPUs)
	chunkDir := cfg.ChunkDir
	if chunkDir == "" {
		chunkDir = filepath.Join(cfg.Home, ".sky", "chunks")
	}
	chunks, err := transfer.NewDiskStore(chunkDir)
	if err != nil {
		return nil, fmt.Errorf("open the chunk store: %w", err)
	}
	a.chunks = chunks
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		// A peer or replica that accepts but never answers (frozen, cut
		// off) must not hang a sync: the next source is tried.
		ResponseHeaderTimeout: 15 * time.Second,
	}
	a.chunkClient = &http.Client{Transport: api.TokenTransport{Token: cfg.Token, Next: tr}}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// Handler is the agent's HTTP API, every route behind the bearer token.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", a.handleHealth)
	mux.HandleFunc("POST /v1/jobs", a.handleSubmit)
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", a.handleCancel)
	mux.HandleFunc("GET /v1/jobs/{id}/log", a.handleLog)
	mux.HandleFunc("POST /v1/node/sync", a.handleSync)
	mux.HandleFunc("POST /v1/node/exec", a.handleExec)
	mux.HandleFunc("POST /v1/node/kill", a.handleKill)
	mux.HandleFunc("POST /v1/node/flush", a.handleFlush)
	mux.HandleFunc("POST /v1/shutdown", a.handleShutdown)
	mux.HandleFunc("GET /v1/shell", a.handleShell)
	mux.Handle("/v1/chunks/", http.StripPrefix("/v1/chunks", transfer.ChunkHandler(a.chunks, transfer.HandlerOptions{})))
	want := []byte(a.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(want) == 0 || subtle.ConstantTimeCompare([]byte(api.RequestToken(r)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sky-agent"`)
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Serve answers the agent API on ln until ctx is cancelled or
// /v1/shutdown is called; then it kills every job process, lets the
// head's pipelines report their end (for a bounded time) and returns.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	// Job processes left by an earlier agent process of this node (one
	// that was SIGKILLed) lost their driver: stop them before serving.
	if left := procscan.WithEnv(api.MarkerEnv + "=" + a.cfg.Marker); len(slices.DeleteFunc(left, func(pid int) bool { return slices.Contains(selfAndAncestors(), pid) })) > 0 {
		a.log.Warn("stopping job processes left by an earlier agent", "pids", left)
		a.killMatching(nil, api.MarkerEnv+"="+a.cfg.Marker)
	}
	if a.cfg.TreeDir != "" && canMountOverlay() {
		a.remountTrees()
	}
	if a.cfg.PrivateMounts {
		if err := a.reclaimPrivateMounts(); err != nil {
			a.log.Warn("re-create private mountpoints", "err", err)
		}
		defer a.releasePrivateMounts()
	}
	if a.cfg.GossipBind != "" {
		key, err := gossipKey(a.cfg.GossipKey)
		if err != nil {
			return err
		}
		m, err := startGossip(a.ctx, gossipConfig{Bind: a.cfg.GossipBind, Key: key, Peers: a.cfg.Peers, Log: a.log,
			Meta: api.NodeMeta{ID: a.cfg.NodeID, Rank: a.cfg.Rank, IP: a.cfg.IP, Addr: a.cfg.Bind,
				GPUs: a.gpus(), Version: a.version, State: "ready"},
			OnLost: a.nodeLost})
		if err != nil {
			return err
		}
		a.members.Store(m)
		defer m.stop()
	}
	go a.restoreMounts()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("serving", "addr", ln.Addr().String(), "version", a.version)
	var serveErr error
	select {
	case <-ctx.Done():
	case <-a.shutdown:
	case serveErr = <-errc:
	}
	a.stopAll()
	a.waitBounded(&a.pipelines, 15*time.Second, "job pipelines")
	a.waitBounded(&a.senders, 5*time.Second, "job event delivery")
	a.unmountAll()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // streams still open (log follow): cut them
	}
	a.cancel()
	a.log.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve agent API on %s: %w", ln.Addr(), serveErr)
	}
	return nil
}

// stopAll refuses new work, stops every pipeline and kills every job
// process of this node. It may run more than once.
func (a *Agent) stopAll() {
	a.mu.Lock()
	a.closing = true
	jobs := make([]*job, 0, len(a.jobs))
	for _, j := range a.jobs {
		jobs = append(jobs, j)
	}
	a.mu.Unlock()
	for _, j := range jobs {
		j.stop(errShutdown)
	}
	a.killAll()
}

func (a *Agent) waitBounded(wg *sync.WaitGroup, d time.Duration, what string) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		a.log.Warn("gave up waiting", "for", what, "after", d)
	}
}

func (a *Agent) handleShutdown(w http.ResponseWriter, r *http.Request) {
	a.log.Info("shutdown requested", "remote", r.RemoteAddr)
	a.stopAll()
	w.WriteHeader(http.StatusNoContent)
	a.shutOnce.Do(func() { close(a.shutdown) })
}

// readJSON decodes r's body into v, answering 400 itself on failure.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<20))
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decode %s body: %w", r.URL.Path, err))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.Error{Error: err.Error()})
}
