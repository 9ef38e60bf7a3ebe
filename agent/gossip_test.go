package agent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// freeAddrs returns n loopback addresses with a port free for TCP and UDP.
//
// The ports are free only until they are used, so they come from below
// Linux's ephemeral range (32768-60999), which every listener on port 0
// and every outgoing connection on the machine draws from (CI saw both
// take one in between: the agents' own listeners, then another test
// process's). They are on 127.0.0.2, away from the agents' 127.0.0.1.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for try := 0; len(out) < n; try++ {
		if try == 1000 {
			t.Fatalf("no %d free ports between 20000 and 32000 on 127.0.0.2", n)
		}
		addr := fmt.Sprintf("127.0.0.2:%d", 20000+mrand.IntN(12000))
		if slices.Contains(out, addr) {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		out = append(out, addr)
	}
	return out
}

func testKey(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSixteenAgentsConvergeAndSeeALossWithinTheBound(t *testing.T) {
	const n = 16
	addrs := freeAddrs(t, n)
	key := testKey(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ms := make([]*membership, n)
	var mu sync.Mutex
	lostAt := map[int]time.Time{} // observer rank → when it saw the loss
	for i := range n {
		m, err := startGossip(ctx, gossipConfig{Bind: addrs[i], Key: key, Peers: addrs, Log: quiet,
			Meta: api.NodeMeta{ID: fmt.Sprintf("node-%d", i), Rank: i, IP: "127.0.0.1", Version: "test", State: "ready"},
			OnLost: func(meta api.NodeMeta, reason string) {
				mu.Lock()
				defer mu.Unlock()
				if meta.Rank == 5 {
					lostAt[i] = time.Now()
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
		defer m.stop()
	}
	waitFor(t, "16 members everywhere", func() bool {
		for _, m := range ms {
			if len(m.members()) != n {
				return false
			}
		}
		return true
	})
	for i, meta := range ms[3].members() {
		if meta.Rank != i || meta.ID != fmt.Sprintf("node-%d", i) {
			t.Fatalf("members()[%d] = %+v; want rank order", i, meta)
		}
	}
	killed := time.Now()
	ms[5].stop()
	waitFor(t, "every live node to declare node 5 dead", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lostAt) == n-1
	})
	var worst time.Duration
	for _, at := range lostAt {
		worst = max(worst, at.Sub(killed))
	}
	t.Logf("node 5 declared dead by all %d others within %s (bound %s)", n-1, worst.Round(time.Millisecond), LossBound)
	if worst > LossBound {
		t.Errorf("loss seen after %s; the bound is %s", worst, LossBound)
	}
	if why := ms[0].lostReason(5); !strings.Contains(why, "node 5 (127.0.0.1)") {
		t.Errorf("reason %q does not name the node", why)
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	addrs := freeAddrs(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := startGossip(ctx, gossipConfig{Bind: addrs[0], Key: testKey(t), Log: quiet, Meta: api.NodeMeta{ID: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.stop()
	b, err := startGossip(ctx, gossipConfig{Bind: addrs[1], Key: testKey(t), Peers: addrs, Log: quiet, Meta: api.NodeMeta{ID: "b", Rank: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.stop()
	time.Sleep(time.Second)
	if len(a.members()) != 1 || len(b.members()) != 1 {
		t.Fatalf("nodes with different keys joined: %d and %d members", len(a.members()), len(b.members()))
	}
}

// TestJobFailsWhenANodeIsLost: a 4-node job whose node 2 dies ends FAILED
// within the loss bound, naming the node, with the other ranks stopped.
func TestJobFailsWhenANodeIsLost(t *testing.T) {
	addrs := freeAddrs(t, 4)
	key := base64.StdEncoding.EncodeToString(testKey(t))
	c := newClusterWith(t, 4, func(cfg *api.AgentConfig) {
		cfg.GossipBind, cfg.GossipKey, cfg.Peers = addrs[cfg.Rank], key, addrs
		cfg.IP = "127.0.0.1"
	})
	waitFor(t, "gossip to converge", func() bool {
		for _, ta := range c.agents {
			if m := ta.a.members.Load(); m == nil || len(m.members()) != 4 {
				return false
			}
		}
		return true
	})
	c.submit(c.job(1, "", "echo started $SKYPILOT_NODE_RANK; sleep 300"))
	waitFor(t, "the job on every node", func() bool {
		for _, ta := range c.agents {
			if len(ta.jobProcs(1)) == 0 {
				return false
			}
		}
		return true
	})
	killed := time.Now()
	c.agents[2].a.members.Load().stop() // the node falls silent
	evs := c.waitEnd(1)
	took := time.Since(killed)
	last := evs[len(evs)-1]
	if last.Status != api.JobFailed || !strings.Contains(last.Message, "node 2 (127.0.0.1)") {
		t.Fatalf("job ended %s: %q; want FAILED naming node 2", last.Status, last.Message)
	}
	if took > LossBound+5*time.Second {
		t.Errorf("the job took %s to fail", took)
	}
	for i, ta := range c.agents {
		if i != 2 && len(ta.jobProcs(1)) != 0 {
			t.Errorf("node %d still runs the job", i)
		}
	}
	var reported bool
	for _, ev := range c.coord.nodeEvents() {
		if ev.Rank == 2 && ev.Lost && ev.Reporter == 0 {
			reported = true
		}
	}
	if !reported {
		t.Error("the head did not report node 2 lost to the coordinator")
	}
}
