package coordinator

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/client"
	"github.com/sky-coord/sky-coord/providers"
	"github.com/sky-coord/sky-coord/providers/local"
	"github.com/sky-coord/sky-coord/spec"
)

// refusingProvider refuses every launch and counts what the coordinator
// asks of it; Terminate waits for hold, when set, to be closed.
type refusingProvider struct {
	*local.Provider
	calls, terminating atomic.Int32
	hold               chan struct{}
}

func (p *refusingProvider) Launch(context.Context, providers.LaunchRequest) ([]providers.Instance, error) {
	p.calls.Add(1)
	return nil, fmt.Errorf("%w: this test's provider launches nothing", providers.ErrInvalidRequest)
}

func (p *refusingProvider) Start(context.Context, string) ([]providers.Instance, error) {
	p.calls.Add(1)
	return nil, fmt.Errorf("%w: this test's provider starts nothing", providers.ErrInvalidRequest)
}

func (p *refusingProvider) Stop(context.Context, string) error {
	p.calls.Add(1)
	return nil
}

func (p *refusingProvider) Terminate(ctx context.Context, _ string) error {
	p.calls.Add(1)
	p.terminating.Add(1)
	if p.hold != nil {
		select {
		case <-p.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ServeTest runs a coordinator on dir with provider p as the local one,
// as sky-coord-server does (leader first, then the API), until stop is
// called. (Exported for the package's external tests.)
func ServeTest(t *testing.T, dir string, p providers.Provider) (s *Server, addr string, stop func()) {
	t.Helper()
	s, err := New(Config{DataDir: dir, Token: "secret-token",
		Providers: map[string]providers.Provider{local.Name: p}, AgentBinary: "/nonexistent/sky-agent"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	return s, l.Addr().String(), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}

// serveOn is ServeTest with a client of the coordinator.
func serveOn(t *testing.T, dir string, p providers.Provider) (*Server, *client.Client, func()) {
	t.Helper()
	s, addr, stop := ServeTest(t, dir, p)
	return s, client.New(addr, "secret-token"), stop
}

// until polls cond every few ms for up to 10 s.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A restarted coordinator acts on its state only once it has applied the
// whole log, never on the snapshot it starts from: here the snapshot holds
// a cluster being torn down, and the log after it, the cluster gone.
// (Acting on the snapshot, a restarted coordinator re-ran old launches and
// teardowns and recorded an old cluster's nodes over a live one's.)
func TestRestartActsOnlyOnTheWholeLog(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	first := &refusingProvider{Provider: local.New(t.TempDir()), hold: make(chan struct{})}
	s, c, stop := serveOn(t, dir, first)
	launchAndFail := func(name string) {
		t.Helper()
		if _, err := c.Launch(ctx, api.LaunchRequest{Cluster: name, Task: &spec.Task{NumNodes: 2, Run: "true"}}); err != nil {
			t.Fatal(err)
		}
		until(t, "the launch of "+name+" to fail", func() bool {
			cl, err := c.Cluster(ctx, name)
			return err == nil && cl.Error != ""
		})
		if err := c.SetDesired(ctx, name, "down"); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(name string) func() bool {
		return func() bool { _, err := c.Cluster(ctx, name); return client.IsNotFound(err) }
	}
	launchAndFail("old")
	until(t, "the teardown of old to start", func() bool { return first.terminating.Load() > 0 })
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	// A log long enough after the snapshot that replaying it takes a
	// while: the window in which a coordinator would act too early.
	for i := range 1000 {
		s.event("old", fmt.Sprintf("waiting %d", i))
	}
	close(first.hold)
	until(t, "old to be gone", gone("old"))
	launchAndFail("later") // more log after the snapshot
	until(t, "later to be gone", gone("later"))
	stop()

	for restart := range 3 {
		again := &refusingProvider{Provider: local.New(t.TempDir())}
		_, c, stop := serveOn(t, dir, again)
		time.Sleep(300 * time.Millisecond) // several controller passes
		for _, name := range []string{"old", "later"} {
			if _, err := c.Cluster(ctx, name); !client.IsNotFound(err) {
				t.Errorf("restart %d: cluster %s: %v; want not found", restart, name, err)
			}
		}
		stop()
		if n := again.calls.Load(); n != 0 {
			t.Fatalf("restart %d: the coordinator asked the provider %d times, acting on a state from before its log's end", restart, n)
		}
	}
}
