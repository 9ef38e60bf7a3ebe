package coordinator

import (
	"context"
	"sync"
	"time"

	"github.com/sky-coord/sky-coord/coordinator/state"
)

// controller runs the leader-only, level-triggered reconcile loop. Each
// cluster gets at most one reconcile goroutine at a time; a change that
// arrives while one runs marks the cluster dirty, so it runs again.
//
// One reconcile step compares what the user asked (Desired) with what the
// log says is there (Status, Nodes, Jobs) and takes the next step:
//
//	Desired DOWN     → terminate instances → ClusterRemoved
//	Desired STOPPED  → stop instances      → STOPPED
//	Desired UP, INIT → launch instances → NodesRecorded → bootstrap → UP
//	Desired UP, STOPPED → start instances → bootstrap → UP
//	Desired UP, UP   → deliver cancels, dispatch PENDING jobs to the head
//
// Every step records its result in the log, so a new leader resumes from
// there; provider calls are idempotent per (cluster, node index).
type controller struct {
	s      *Server
	pokeCh chan struct{}

	mu     sync.Mutex
	active map[string]*clusterWork
	wg     sync.WaitGroup
}

type clusterWork struct {
	running bool
	dirty   bool
}

func newController(s *Server) *controller {
	return &controller{s: s, pokeCh: make(chan struct{}, 1), active: map[string]*clusterWork{}}
}

// poke wakes the loop; it never blocks.
func (c *controller) poke() {
	select {
	case c.pokeCh <- struct{}{}:
	default:
	}
}

// after pokes the loop once d has passed (a deadline such as an
// autostop's); the 2 s tick is the fallback.
func (c *controller) after(d time.Duration) {
	if d > 2*time.Second {
		return // the tick comes first
	}
	time.AfterFunc(max(d, 0), c.poke)
}

func (c *controller) run(ctx context.Context) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		if c.s.catchUp() {
			c.scan(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.pokeCh:
		case <-tick.C:
		}
	}
}

func (c *controller) wait() { c.wg.Wait() }

func (c *controller) scan(ctx context.Context) {
	var names []string
	c.s.read(func(st *state.Store) {
		for name := range st.Clusters {
			names = append(names, name)
		}
	})
	for _, name := range names {
		c.kick(ctx, name)
	}
}

// kick starts a reconcile for one cluster, or marks it dirty if one runs.
func (c *controller) kick(ctx context.Context, name string) {
	c.mu.Lock()
	w := c.active[name]
	if w == nil {
		w = &clusterWork{}
		c.active[name] = w
	}
	if w.running {
		w.dirty = true
		c.mu.Unlock()
		return
	}
	w.running = true
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			c.s.reconcile(ctx, name)
			c.mu.Lock()
			if w.dirty && ctx.Err() == nil {
				w.dirty = false
				c.mu.Unlock()
				continue
			}
			w.running = false
			delete(c.active, name)
			c.mu.Unlock()
			return
		}
	}()
}
