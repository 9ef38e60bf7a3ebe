package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/sky-coord/sky-coord/api"
)

// Gossip timing: a dead node is suspected after a failed probe (half a
// second apart) and declared dead once the suspicion timeout passes —
// a few seconds for a small cluster, well inside the 15 s a user should
// wait to learn that a node is gone.
const (
	probeInterval = 500 * time.Millisecond
	probeTimeout  = 300 * time.Millisecond
	suspicionMult = 2
)

// LossBound is the longest a node's death takes to be declared by every
// other node, for the cluster sizes sky-coord runs (the suspicion timeout
// at its maximum, plus a probe round).
const LossBound = 8 * time.Second

// membership is one node's view of its cluster by gossip.
type membership struct {
	ml   *memberlist.Memberlist
	self api.NodeMeta
	log  *slog.Logger

	mu      sync.Mutex
	alive   map[string]api.NodeMeta // by node name (ID)
	lost    map[int]string          // rank → why, for nodes declared dead
	waiters []chan struct{}         // woken on every change
	onLost  func(api.NodeMeta, string)
}

type gossipConfig struct {
	Bind  string // IP:port
	Key   []byte // 16, 24 or 32 bytes
	Peers []string
	Meta  api.NodeMeta
	Log   *slog.Logger
	// OnLost is called (on its own goroutine) when a node is declared dead.
	OnLost func(meta api.NodeMeta, reason string)
}

// startGossip joins this node to its cluster's gossip; joining retries in
// the background until a peer answers or ctx ends.
func startGossip(ctx context.Context, cfg gossipConfig) (*membership, error) {
	host, portStr, err := net.SplitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", cfg.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: bad port", cfg.Bind)
	}
	m := &membership{self: cfg.Meta, log: cfg.Log, alive: map[string]api.NodeMeta{}, lost: map[int]string{}, onLost: cfg.OnLost}
	if m.log == nil {
		m.log = slog.Default()
	}
	c := memberlist.DefaultLANConfig()
	c.Name = cfg.Meta.ID
	c.BindAddr, c.BindPort = host, port
	c.AdvertiseAddr, c.AdvertisePort = host, port
	c.SecretKey = cfg.Key
	c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult = probeInterval, probeTimeout, suspicionMult
	c.GossipInterval = 100 * time.Millisecond
	c.TCPTimeout = 2 * time.Second
	c.PushPullInterval = 10 * time.Second
	// Messages here are a few hundred bytes: compressing each (LZW, with
	// a fresh table every time) cost more CPU than all else memberlist
	// does, and saved nothing worth it on a cluster's network.
	c.EnableCompression = false
	c.Delegate = m
	c.Events = m
	c.Logger = log.New(logWriter{m.log}, "", 0)
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.Bind, err)
	}
	m.ml = ml
	var peers []string
	for _, p := range cfg.Peers {
		if p != cfg.Bind {
			peers = append(peers, p)
		}
	}
	if len(peers) > 0 {
		go m.joinLoop(ctx, peers)
	}
	return m, nil
}

func (m *membership) joinLoop(ctx context.Context, peers []string) {
	wait := 100 * time.Millisecond
	for {
		n, err := m.ml.Join(peers)
		if n > 0 {
			return
		}
		m.log.Debug("gossip join: no peer answered yet", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// stop leaves the gossip abruptly, as a dying node would: peers declare
// it dead within LossBound unless it returns.
func (m *membership) stop() {
	if m != nil && m.ml != nil {
		_ = m.ml.Shutdown()
	}
}

// membersOrNil is members, or nil without gossip.
func (m *membership) membersOrNil() []api.NodeMeta {
	if m == nil {
		return nil
	}
	return m.members()
}

// members are the live nodes, by rank.
func (m *membership) members() []api.NodeMeta {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]api.NodeMeta, 0, len(m.alive))
	for _, v := range m.alive {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b api.NodeMeta) int { return a.Rank - b.Rank })
	return out
}

// lostReason says why a rank was declared dead, or "".
func (m *membership) lostReason(rank int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lost[rank]
}

// waitLost waits up to d for a verdict on a node that stopped answering
// on another channel: it returns the reason once gossip declares the rank
// dead, or "" when d passes (or ctx ends) with the node alive.
func (m *membership) waitLost(ctx context.Context, rank int, d time.Duration) string {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		why := m.lost[rank]
		ch := make(chan struct{})
		m.waiters = append(m.waiters, ch)
		m.mu.Unlock()
		if why != "" {
			return why
		}
		select {
		case <-ch:
		case <-deadline.C:
			return ""
		case <-ctx.Done():
			return ""
		}
	}
}

func (m *membership) changed() {
	for _, ch := range m.waiters {
		close(ch)
	}
	m.waiters = nil
}

// NodeMeta implements memberlist.Delegate.
func (m *membership) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(m.self)
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg, GetBroadcasts, LocalState and MergeRemoteState implement
// memberlist.Delegate: sky-coord gossips membership and metadata only.
func (m *membership) NotifyMsg([]byte)                           {}
func (m *membership) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (m *membership) LocalState(join bool) []byte                { return nil }
func (m *membership) MergeRemoteState(buf []byte, join bool)     {}

func decodeMeta(n *memberlist.Node) (api.NodeMeta, bool) {
	var meta api.NodeMeta
	if err := json.Unmarshal(n.Meta, &meta); err != nil || meta.ID == "" {
		return meta, false
	}
	return meta, true
}

// NotifyJoin implements memberlist.EventDelegate.
func (m *membership) NotifyJoin(n *memberlist.Node) {
	meta, ok := decodeMeta(n)
	if !ok {
		return
	}
	m.mu.Lock()
	m.alive[n.Name] = meta
	delete(m.lost, meta.Rank)
	m.changed()
	m.mu.Unlock()
	m.log.Debug("gossip: node joined", "node", n.Name, "rank", meta.Rank)
}

// NotifyUpdate implements memberlist.EventDelegate.
func (m *membership) NotifyUpdate(n *memberlist.Node) { m.NotifyJoin(n) }

// NotifyLeave implements memberlist.EventDelegate: a node died (or left).
func (m *membership) NotifyLeave(n *memberlist.Node) {
	meta, ok := decodeMeta(n)
	if !ok {
		return
	}
	reason := fmt.Sprintf("node %d (%s) stopped answering gossip and was declared dead", meta.Rank, meta.IP)
	if n.State == memberlist.StateLeft {
		reason = fmt.Sprintf("node %d (%s) left the cluster", meta.Rank, meta.IP)
	}
	m.mu.Lock()
	delete(m.alive, n.Name)
	m.lost[meta.Rank] = reason
	m.changed()
	cb := m.onLost
	m.mu.Unlock()
	m.log.Warn("gossip: node lost", "node", n.Name, "rank", meta.Rank, "reason", reason)
	if cb != nil {
		go cb(meta, reason)
	}
}

// gossipKey decodes the coordinator's base64 key.
func gossipKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("gossip key: %d bytes; want 16, 24 or 32", len(k))
}

// logWriter turns memberlist's log lines into debug (or warn) records.
type logWriter struct{ l *slog.Logger }

// Its errors and warnings are expected while nodes come and go, so all go
// to debug; a lost node is logged by NotifyLeave.
func (w logWriter) Write(p []byte) (int, error) {
	w.l.Debug("memberlist", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = logWriter{}
