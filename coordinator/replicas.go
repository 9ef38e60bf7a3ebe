package coordinator

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
)

// Replicated mode: three (or more) `sky-coord server` processes form one
// Raft cluster over TCP. A replica's Raft ID is its API address, so any
// replica can name the leader's API to forward writes to. Raft traffic is
// authenticated with a challenge-response on the shared cluster key (the
// API token every replica reads from its --token-file): a process without
// the key cannot join or feed entries.

// authStream is a raft.StreamLayer whose connections prove, both ways,
// that each end holds the cluster key.
type authStream struct {
	net.Listener
	key []byte
}

const authMagic = "SKYR1"

func (a *authStream) Accept() (net.Conn, error) {
	for {
		c, err := a.Listener.Accept()
		if err != nil {
			return nil, err
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := handshake(c, a.key, false); err != nil {
			c.Close()
			continue // not a replica of this cluster
		}
		_ = c.SetDeadline(time.Time{})
		return c, nil
	}
}

func (a *authStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := handshake(c, a.key, true); err != nil {
		c.Close()
		return nil, fmt.Errorf("replica %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// handshake: each side sends a nonce, then the HMAC of the other's nonce
// (with its role), and checks the MAC it receives.
func handshake(c net.Conn, key []byte, dialer bool) error {
	mine := make([]byte, 16)
	if _, err := rand.Read(mine); err != nil {
		return err
	}
	if _, err := c.Write(append([]byte(authMagic), mine...)); err != nil {
		return err
	}
	theirs := make([]byte, len(authMagic)+16)
	if _, err := io.ReadFull(c, theirs); err != nil {
		return err
	}
	if string(theirs[:len(authMagic)]) != authMagic {
		return errors.New("not a sky-coord replica")
	}
	mac := func(nonce []byte, role string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(role))
		m.Write(nonce)
		return m.Sum(nil)
	}
	myRole, theirRole := "accept", "dial"
	if dialer {
		myRole, theirRole = "dial", "accept"
	}
	if _, err := c.Write(mac(theirs[len(authMagic):], myRole)); err != nil {
		return err
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !hmac.Equal(got, mac(mine, theirRole)) {
		return errors.New("the replica does not hold this cluster's key (is its --token-file the same?)")
	}
	return nil
}

// openReplicatedRaft opens this replica's Raft over an authenticated TCP
// transport on cfg.RaftBind, with ID cfg.ServerID (its API address).
func openReplicatedRaft(cfg Config, f *fsm.FSM, logger hclog.Logger) (*raft.Raft, func() error, bool, error) {
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, false, fmt.Errorf("create raft directory %s: %w", dir, err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, nil, false, fmt.Errorf("open raft log %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logger)
	if err != nil {
		store.Close()
		return nil, nil, false, err
	}
	ln, err := net.Listen("tcp", cfg.RaftBind)
	if err != nil {
		store.Close()
		return nil, nil, false, fmt.Errorf("listen for raft on %s: %w", cfg.RaftBind, err)
	}
	trans := raft.NewNetworkTransportWithLogger(&authStream{Listener: ln, key: cfg.ClusterKey}, 5, 10*time.Second, logger)
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(cfg.ServerID)
	conf.Logger = logger
	// Fast failover on a LAN: a dead leader is replaced in about a second.
	conf.HeartbeatTimeout = 300 * time.Millisecond
	conf.ElectionTimeout = 300 * time.Millisecond
	conf.LeaderLeaseTimeout = 200 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.SnapshotThreshold = 4096
	conf.TrailingLogs = 2048
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		trans.Close()
		return nil, nil, false, err
	}
	if !has && cfg.BootstrapExpect <= 1 && len(cfg.Join) == 0 {
		c := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: trans.LocalAddr()}}}
		if err := raft.BootstrapCluster(conf, store, store, snaps, trans, c); err != nil {
			store.Close()
			trans.Close()
			return nil, nil, false, err
		}
		has = true
	}
	r, err := raft.NewRaft(conf, f, store, store, snaps, trans)
	if err != nil {
		store.Close()
		trans.Close()
		return nil, nil, false, err
	}
	closeFn := func() error {
		err := r.Shutdown().Error()
		return errors.Join(err, trans.Close(), store.Close())
	}
	return r, closeFn, has, nil
}

// selfInfo is what replicas tell each other while forming a cluster.
type selfInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	Formed   bool   `json:"formed"` // part of a cluster with a configuration
}

func (s *Server) handleSelf(w http.ResponseWriter, r *http.Request) {
	cfg := s.raft.GetConfiguration()
	formed := cfg.Error() == nil && len(cfg.Configuration().Servers) > 0
	writeJSON(w, http.StatusOK, selfInfo{ID: s.cfg.ServerID, RaftAddr: s.cfg.RaftBind, Formed: formed})
}

// handleJoin adds a replica (leader only; followers forward writes).
func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	var in selfInfo
	if err := decodeBody(r, &in); err != nil {
		s.fail(w, err)
		return
	}
	if err := s.raft.AddVoter(raft.ServerID(in.ID), raft.ServerAddress(in.RaftAddr), 0, 10*time.Second).Error(); err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("add replica %s: %w", in.ID, err))
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// form brings a fresh replica into its cluster: it asks the --join peers
// who they are; when one already belongs to a formed cluster it asks to be
// added, and when bootstrap-expect replicas (itself included) have met and
// none is formed, each bootstraps the same configuration of all of them.
func (s *Server) form(ctx context.Context) {
	if s.formed || s.cfg.RaftBind == "" {
		return
	}
	self := selfInfo{ID: s.cfg.ServerID, RaftAddr: s.cfg.RaftBind}
	hc := &http.Client{Timeout: 3 * time.Second}
	warned := map[string]bool{}
	for {
		if c := s.raft.GetConfiguration(); c.Error() == nil && len(c.Configuration().Servers) > 0 {
			return // formed (a peer added us, or we bootstrapped)
		}
		met := map[string]selfInfo{self.ID: self}
		for _, p := range s.cfg.Join {
			var in selfInfo
			if err := s.peerCall(ctx, hc, p, http.MethodGet, "/v1/cluster/self", nil, &in); err != nil {
				if strings.Contains(err.Error(), "401") && !warned[p] {
					warned[p] = true
					s.log.Warn("a replica rejects this replica's token: every replica needs the same --token-file contents", "replica", p)
				}
				continue
			}
			if in.Formed {
				if err := s.peerCall(ctx, hc, p, http.MethodPost, "/v1/cluster/join", self, nil); err == nil {
					s.log.Info("joined the coordinator cluster", "via", p)
					return
				}
				continue
			}
			met[in.ID] = in
		}
		if s.cfg.BootstrapExpect > 1 && len(met) >= s.cfg.BootstrapExpect {
			var servers []raft.Server
			for _, m := range met {
				servers = append(servers, raft.Server{ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr)})
			}
			sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
			err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
			if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				s.log.Warn("bootstrap the coordinator cluster", "err", err)
			} else {
				s.log.Info("coordinator cluster formed", "replicas", len(servers))
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (s *Server) peerCall(ctx context.Context, hc *http.Client, addr, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return err
	}
	api.SetToken(req, s.cfg.Token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer api.CloseBody(resp.Body)
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s on %s: %s: %s", method, path, addr, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// forwardWrites sends every write that reaches a follower to the leader
// (a replica's Raft ID is its API address); reads are served here.
func (s *Server) forwardWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write := r.Method != http.MethodGet && r.Method != http.MethodHead
		if write && s.raft.State() == raft.Leader && !s.catchUp() {
			// A write decided on a state still being replayed could
			// undo what the log already holds.
			writeError(w, http.StatusServiceUnavailable, errors.New("the coordinator is catching up with its log; retry in a moment"))
			return
		}
		if !write || s.cfg.RaftBind == "" || s.raft.State() == raft.Leader || strings.HasPrefix(r.URL.Path, "/v1/cluster/self") {
			next.ServeHTTP(w, r)
			return
		}
		leader := s.leaderAPI(r.Context())
		if leader == "" {
			writeError(w, http.StatusServiceUnavailable, errors.New("the coordinator cluster has no leader right now (a majority of replicas must be up); retry in a moment"))
			return
		}
		if r.Header.Get("X-Sky-Coord-Forwarded") != "" {
			writeError(w, http.StatusServiceUnavailable, errors.New("leadership is changing; retry in a moment"))
			return
		}
		u := &url.URL{Scheme: "http", Host: leader}
		proxy := httputil.NewSingleHostReverseProxy(u)
		proxy.FlushInterval = -1
		// Read your writes: answer once this replica has applied the
		// leader's log up to the write, so the client's next read here
		// sees it.
		proxy.ModifyResponse = func(resp *http.Response) error {
			idx, err := strconv.ParseUint(resp.Header.Get(indexHeader), 10, 64)
			if err == nil {
				deadline := time.Now().Add(2 * time.Second)
				for s.raft.AppliedIndex() < idx && time.Now().Before(deadline) {
					select {
					case <-s.changes():
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
			return nil
		}
		r.Header.Set("X-Sky-Coord-Forwarded", s.cfg.ServerID)
		proxy.ServeHTTP(w, r)
	})
}

// indexHeader carries, on a leader's answer to a write, the log index
// applied when it answered.
const indexHeader = "X-Sky-Coord-Index"

// stampIndex adds indexHeader to every answer of a replicated leader.
func (s *Server) stampIndex(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.RaftBind == "" || r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&indexWriter{ResponseWriter: w, s: s}, r)
	})
}

type indexWriter struct {
	http.ResponseWriter
	s     *Server
	wrote bool
}

func (iw *indexWriter) WriteHeader(code int) {
	if !iw.wrote {
		iw.wrote = true
		iw.Header().Set(indexHeader, strconv.FormatUint(iw.s.raft.AppliedIndex(), 10))
	}
	iw.ResponseWriter.WriteHeader(code)
}

func (iw *indexWriter) Write(p []byte) (int, error) {
	if !iw.wrote {
		iw.WriteHeader(http.StatusOK)
	}
	return iw.ResponseWriter.Write(p)
}

func (iw *indexWriter) Flush() {
	if f, ok := iw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (iw *indexWriter) Unwrap() http.ResponseWriter { return iw.ResponseWriter }

// leaderAPI is the leader's API address, waiting a little for an election.
func (s *Server) leaderAPI(ctx context.Context) string {
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, id := s.raft.LeaderWithID()
		if id != "" {
			return string(id)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// handleMembers lists the replicas: id, API address, state and leader.
func (s *Server) handleMembers(w http.ResponseWriter, r *http.Request) {
	cfg := s.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	_, leader := s.raft.LeaderWithID()
	// Ask the others whether they answer, all at once and briefly.
	servers := cfg.Configuration().Servers
	answers := make([]bool, len(servers))
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	for i, sv := range servers {
		if s.cfg.RaftBind == "" || string(sv.ID) == s.cfg.ServerID {
			answers[i] = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var in selfInfo
			answers[i] = s.peerCall(r.Context(), hc, string(sv.ID), http.MethodGet, "/v1/cluster/self", nil, &in) == nil
		}()
	}
	wg.Wait()
	var out []api.Member
	for i, sv := range servers {
		m := api.Member{ID: string(sv.ID), Address: string(sv.ID), RaftAddress: string(sv.Address), Leader: sv.ID == leader}
		if s.cfg.RaftBind == "" {
			m.Address = s.addr // the embedded replica
		}
		switch {
		case string(sv.ID) == s.cfg.ServerID || (s.cfg.RaftBind == "" && sv.ID == leader):
			m.State = strings.ToLower(s.raft.State().String())
		case !answers[i]:
			m.State = "unreachable"
		case m.Leader:
			m.State = "leader"
		case sv.Suffrage == raft.Voter:
			m.State = "follower"
		default:
			m.State = "nonvoter"
		}
		out = append(out, m)
	}
	writeJSON(w, http.StatusOK, out)
}

// replicaURLs are the API URLs of every replica, sorted (replicated
// mode; nil otherwise). Agents are given all of them, the first as their
// main one: the same on whichever replica leads, so a new leader finds
// the agents' configuration unchanged.
func (s *Server) replicaURLs() []string {
	if s.cfg.RaftBind == "" {
		return nil
	}
	cfg := s.raft.GetConfiguration()
	if cfg.Error() != nil {
		return nil
	}
	var out []string
	for _, sv := range cfg.Configuration().Servers {
		out = append(out, "http://"+string(sv.ID))
	}
	sort.Strings(out)
	return out
}
