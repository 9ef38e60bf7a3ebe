// Package coordinator owns the Raft log and everything that acts on it:
// the HTTP API handlers (parse → validate → fill IDs and times → append to
// the log) and the leader-only controllers (provision → bootstrap →
// dispatch → watch → tear down).
package coordinator

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/sky-coord/sky-coord/bootstrap"
	"github.com/sky-coord/sky-coord/catalog"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
	"github.com/sky-coord/sky-coord/coordinator/state"
	"github.com/sky-coord/sky-coord/providers"
	"github.com/sky-coord/sky-coord/transfer"
)

// Config configures a coordinator.
type Config struct {
	// DataDir holds the Raft log, snapshots, chunks and the agent secret.
	DataDir string
	// Token is the API bearer token.
	Token string
	// Providers by name ("local", ...); the task's cloud picks one.
	Providers map[string]providers.Provider
	// AgentBinary is the sky-agent binary bootstrap installs on nodes;
	// AgentBinaries, when set, has one per GOARCH for nodes that say
	// theirs (SSH nodes answer `uname -m`).
	AgentBinary   string
	AgentBinaries map[string]string
	// MountBinaries are sky-mount binaries by GOARCH, served to agents
	// that need to mount a bucket.
	MountBinaries map[string]string
	Version       string
	Logger        *slog.Logger
	// Catalog prices the clouds' offers. When nil, the catalogs are read
	// from CatalogHome (its catalogs/v8 cache, else the embedded snapshot)
	// and read again when a cached file changes (`catalog update`).
	Catalog     *catalog.Catalog
	CatalogHome string
	// Replicated mode (`sky-coord server --raft-bind ...`): RaftBind is
	// where this replica's Raft listens; ServerID its ID, which is its API
	// address; Join the API addresses of the other replicas; and
	// BootstrapExpect how many replicas form a new cluster. ClusterKey,
	// shared by every replica (the API token), authenticates Raft traffic
	// and derives the agents' tokens, so any replica can lead. Without
	// RaftBind the coordinator is one embedded replica.
	RaftBind        string
	ServerID        string
	Join            []string
	BootstrapExpect int
	ClusterKey      []byte
	// FaultPause, for fault tests only, makes the leader wait at a named
	// step ("provision": after recording an attempt, before the provider
	// call; "bootstrap": after recording the nodes, before bootstrap), so
	// a test can kill it there.
	FaultPause map[string]time.Duration
	// RetryGap is the first wait between rounds of `--retry-until-up`
	// (30 s when zero); it grows 1.5× a round, up to 5 minutes.
	RetryGap time.Duration
}

// Server is one coordinator replica.
type Server struct {
	cfg       Config
	log       *slog.Logger
	fsm       *fsm.FSM
	raft      *raft.Raft
	closeRaft func() error
	chunks    *transfer.DiskStore
	secret    []byte
	http      *http.Server
	addr      string
	agents    *agentClient

	changedMu sync.Mutex
	changed   chan struct{} // closed and replaced after every applied entry

	catalogs catalogCache
	formed   bool // the Raft cluster has a configuration

	// caughtUpTerm is the last Raft term in which this replica, leading,
	// had applied every entry committed before the term began (catchUp).
	caughtUpTerm atomic.Uint64
	catchUpMu    sync.Mutex

	ctrl     *controller
	watcher  *watcher
	stopOnce sync.Once
	stopped  chan struct{}
}

// New opens the coordinator's state under cfg.DataDir.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.RetryGap == 0 {
		cfg.RetryGap = 30 * time.Second
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.DataDir, err)
	}
	var secret []byte
	var err error
	if len(cfg.ClusterKey) > 0 {
		m := hmac.New(sha256.New, cfg.ClusterKey)
		m.Write([]byte("agent-secret"))
		secret = m.Sum(nil)
	} else if secret, err = loadOrCreateSecret(filepath.Join(cfg.DataDir, "agent-secret")); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "coordinator"),
		secret:  secret,
		changed: make(chan struct{}),
		stopped: make(chan struct{}),
		agents:  newAgentClient(),
		watcher: newWatcher(),
	}
	s.chunks, err = transfer.NewDiskStore(filepath.Join(cfg.DataDir, "chunks"))
	if err != nil {
		return nil, fmt.Errorf("open the chunk store: %w", err)
	}
	s.fsm = fsm.New(s.onApplied)
	raftLog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{s.log}})
	if cfg.RaftBind != "" {
		if cfg.ServerID == "" {
			return nil, errors.New("a replicated coordinator needs a server ID (its API address)")
		}
		if len(cfg.ClusterKey) == 0 {
			return nil, errors.New("a replicated coordinator needs the cluster key (the shared token)")
		}
		s.raft, s.closeRaft, s.formed, err = openReplicatedRaft(cfg, s.fsm, raftLog)
	} else {
		s.raft, s.closeRaft, err = openRaft(filepath.Join(cfg.DataDir, "raft"), s.fsm, raftLog)
		s.formed = true
	}
	if err != nil {
		return nil, err
	}
	s.ctrl = newController(s)
	s.agents.route = s.routeAgent
	go func() {
		// Agents for SSH nodes go compressed: have them ready, when
		// there are SSH nodes to send them to.
		needed := false
		for _, p := range cfg.Providers {
			_, remote := p.(CoordinatorForwarder)
			if ch, ok := p.(Checker); remote && ok {
				enabled, _ := ch.Check()
				needed = needed || enabled
			}
		}
		if !needed {
			return
		}
		paths := []string{cfg.AgentBinary}
		for _, p := range cfg.AgentBinaries {
			paths = append(paths, p)
		}
		bootstrap.Prepare(paths...)
	}()
	return s, nil
}

// routeAgent finds the provider that reaches an agent address when it is
// not directly reachable (ssh pools).
func (s *Server) routeAgent(addr string) AgentDialer {
	cloud := ""
	s.read(func(st *state.Store) {
		for _, c := range st.Clusters {
			for _, n := range c.Nodes {
				if n.AgentAddr == addr {
					cloud = c.Cloud
					return
				}
			}
		}
	})
	if d, ok := s.cfg.Providers[cloud].(AgentDialer); ok {
		return d
	}
	return nil
}

// Serve answers the API on l until ctx ends or Shutdown is called.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.addr = l.Addr().String()
	s.http = &http.Server{Handler: s.forwardWrites(s.stampIndex(s.routes())), ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.ctrl.run(ctx)
	go s.form(ctx)
	go s.chunkGCLoop(ctx)
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(l) }()
	select {
	case <-ctx.Done():
	case <-s.stopped:
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve API on %s: %w", s.addr, err)
		}
	}
	cancel()
	shutCtx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer c2()
	_ = s.http.Shutdown(shutCtx)
	s.ctrl.wait()
	return s.closeRaft()
}

// Shutdown asks Serve to return.
func (s *Server) Shutdown() { s.stopOnce.Do(func() { close(s.stopped) }) }

// Addr is the API's listen address once Serve has started.
func (s *Server) Addr() string { return s.addr }

func (s *Server) onApplied() {
	s.changedMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.changedMu.Unlock()
	if s.ctrl != nil {
		s.ctrl.poke()
	}
}

// changes returns a channel closed at the next applied entry.
func (s *Server) changes() <-chan struct{} {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	return s.changed
}

// WaitLeader waits until this replica leads (a single replica elects
// itself within a heartbeat timeout) and has caught up with its log
// (catchUp), or ctx ends.
func (s *Server) WaitLeader(ctx context.Context) error {
	for s.raft.State() != raft.Leader || !s.catchUp() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no Raft leader elected: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// catchUp reports whether this replica leads with every entry committed
// before its term applied to its state, waiting for that once per term
// (raft.Barrier). A replica that becomes leader, a restarted one above
// all, first holds the state of the snapshot it started from while the
// log after it is still being applied: acting on that state re-ran
// launches and teardowns finished long before, and recorded an old
// cluster's nodes over a live one's.
func (s *Server) catchUp() bool {
	if s.raft.State() != raft.Leader {
		return false
	}
	term := s.raft.CurrentTerm()
	if s.caughtUpTerm.Load() == term {
		return true
	}
	s.catchUpMu.Lock()
	defer s.catchUpMu.Unlock()
	if s.caughtUpTerm.Load() == term {
		return true
	}
	if err := s.raft.Barrier(10 * time.Second).Error(); err != nil {
		s.log.Warn("catch up with the log before leading", "term", term, "err", err)
		return false
	}
	s.caughtUpTerm.Store(term)
	return true
}

// leading reports, without waiting, whether this replica leads and has
// caught up with its log (catchUp).
func (s *Server) leading() bool {
	return s.raft.State() == raft.Leader && s.caughtUpTerm.Load() == s.raft.CurrentTerm()
}

// ErrNotLeader means this replica cannot append to the log.
var ErrNotLeader = errors.New("this coordinator replica is not the leader")

// apply appends one command to the log and returns the FSM's result.
func (s *Server) apply(t fsm.MessageType, msg any) (fsm.Result, error) {
	data, err := fsm.Encode(t, msg)
	if err != nil {
		return fsm.Result{}, err
	}
	f := s.raft.Apply(data, 10*time.Second)
	if errors.Is(f.Error(), raft.ErrNotLeader) {
		// Leadership may be moments from (re)election: wait once.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		werr := s.WaitLeader(ctx)
		cancel()
		if werr == nil {
			f = s.raft.Apply(data, 10*time.Second)
		}
	}
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return fsm.Result{}, ErrNotLeader
		}
		return fsm.Result{}, fmt.Errorf("append to the coordinator log: %w", err)
	}
	res, _ := f.Response().(fsm.Result)
	return res, res.Err
}

// read runs fn against the current state.
func (s *Server) read(fn func(*state.Store)) { s.fsm.Read(fn) }

// agentToken is the bearer token of one incarnation of a cluster's agents:
// derived, never stored, so no token sits in the log or a snapshot.
func (s *Server) agentToken(cluster string, incarnation uint64) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(cluster + "\x00" + strconv.FormatUint(incarnation, 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// gossipKey is a cluster incarnation's memberlist key (AES-256, base64),
// derived like the agent token so it is never stored.
func (s *Server) gossipKey(cluster string, incarnation uint64) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("gossip\x00" + cluster + "\x00" + strconv.FormatUint(incarnation, 10)))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func loadOrCreateSecret(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err == nil && len(data) >= 32 {
		return data, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read agent secret %s: %w", path, err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, secret, 0o600); err != nil {
		return nil, fmt.Errorf("write agent secret %s: %w", path, err)
	}
	return secret, nil
}

// slogWriter lets hclog (raft's logger) write into slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Info(string(p), "component", "raft")
	return len(p), nil
}

// pause waits at a fault-test step (see Config.FaultPause).
func (s *Server) pause(ctx context.Context, step string) {
	d := s.cfg.FaultPause[step]
	if d <= 0 {
		return
	}
	s.log.Warn("fault test: pausing", "step", step, "for", d)
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// AppendEvent appends one progress event for cluster through the Raft
// log and returns once it is applied: the coordinator's whole write path
// (encode, Raft, bolt, FSM). The benchmark times it against bare Raft.
func (s *Server) AppendEvent(cluster, msg string) error {
	_, err := s.apply(fsm.ClusterEventType, fsm.ClusterEvent{Cluster: cluster, Message: msg, At: time.Now().UTC()})
	return err
}
