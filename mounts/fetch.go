package mounts

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// fetcher downloads one object into its cache file in chunks, several at
// once: in order, except that chunks a reader waits for jump the queue.
type fetcher struct {
	st     Store
	key    string
	url    string
	f      io.WriterAt
	size   int64
	chunk  int64
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	onDone func(*fetcher) // called once, when every chunk is on disk

	mu    sync.Mutex
	cond  *sync.Cond
	state []uint8 // per chunk: 0 to fetch, 1 fetching, 2 on disk
	left  int     // chunks not on disk
	prio  []int   // chunks readers wait for
	next  int     // next chunk in order
	err   error
}

const (
	chunkTodo = iota
	chunkBusy
	chunkDone
)

// startFetch starts fetching ce's object with spec.ReadAhead workers.
func (c *cache) startFetch(ce *centry) *fetcher {
	n := int((ce.size + c.spec.ChunkSize - 1) / c.spec.ChunkSize)
	ft := &fetcher{st: c.st, key: ce.key, url: c.objectURL(ce.key), f: ce.f, size: ce.size, chunk: c.spec.ChunkSize,
		state: make([]uint8, n), left: n}
	ft.cond = sync.NewCond(&ft.mu)
	ft.ctx, ft.cancel = context.WithCancel(c.ctx)
	context.AfterFunc(ft.ctx, func() {
		ft.mu.Lock()
		if ft.err == nil && ft.left > 0 {
			ft.err = fmt.Errorf("fetch %s: %w", ft.url, context.Canceled)
		}
		ft.cond.Broadcast()
		ft.mu.Unlock()
	})
	ft.onDone = func(ft *fetcher) {
		c.mu.Lock()
		if ce.fetch == ft {
			ce.fetch = nil
		}
		c.evictLocked()
		c.mu.Unlock()
	}
	for range min(c.spec.ReadAhead, n) {
		ft.wg.Add(1)
		c.wg.Go(func() {
			defer ft.wg.Done()
			ft.work()
		})
	}
	return ft
}

func (ft *fetcher) work() {
	for {
		i, ok := ft.pick()
		if !ok {
			return
		}
		err := ft.get(i)
		ft.mu.Lock()
		if err != nil {
			if ft.err == nil {
				ft.err = err
			}
			ft.cond.Broadcast()
			ft.mu.Unlock()
			return
		}
		ft.state[i] = chunkDone
		ft.left--
		done := ft.left == 0
		ft.cond.Broadcast()
		ft.mu.Unlock()
		if done {
			ft.onDone(ft)
			ft.cancel() // releases the context; the fetch is complete
			return
		}
	}
}

func (ft *fetcher) pick() (int, bool) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.err != nil {
		return 0, false
	}
	for len(ft.prio) > 0 {
		i := ft.prio[0]
		ft.prio = ft.prio[1:]
		if ft.state[i] == chunkTodo {
			ft.state[i] = chunkBusy
			return i, true
		}
	}
	for ; ft.next < len(ft.state); ft.next++ {
		if ft.state[ft.next] == chunkTodo {
			ft.state[ft.next] = chunkBusy
			return ft.next, true
		}
	}
	return 0, false
}

// get fetches chunk i, trying a broken stream again twice.
func (ft *fetcher) get(i int) error {
	off := int64(i) * ft.chunk
	n := min(ft.chunk, ft.size-off)
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ft.ctx.Done():
				return ft.ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		var rc io.ReadCloser
		rc, err = ft.st.Read(ft.ctx, ft.key, off, n)
		if err != nil {
			continue
		}
		var got int64
		got, err = io.Copy(io.NewOffsetWriter(ft.f, off), io.LimitReader(rc, n))
		rc.Close()
		if err == nil && got != n {
			err = fmt.Errorf("fetch %s: %w (the object changed?)", ft.url, errShort(got, n))
		}
		if err == nil {
			return nil
		}
	}
	return err
}

// wait returns once [off, off+n) is on disk, asking for its chunks first.
func (ft *fetcher) wait(off, n int64) error {
	if n <= 0 {
		return nil
	}
	first, last := int(off/ft.chunk), int((off+n-1)/ft.chunk)
	ft.mu.Lock()
	defer ft.mu.Unlock()
	for i := first; i <= last && i < len(ft.state); i++ {
		if ft.state[i] == chunkTodo {
			ft.prio = append(ft.prio, i)
		}
	}
	for {
		if ft.err != nil {
			return ft.err
		}
		done := true
		for i := first; i <= last && i < len(ft.state); i++ {
			if ft.state[i] != chunkDone {
				done = false
				break
			}
		}
		if done {
			return nil
		}
		ft.cond.Wait()
	}
}

func (ft *fetcher) failed() bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.err != nil
}

// stop ends the fetch and waits for its writes to stop.
func (ft *fetcher) stop() {
	ft.cancel()
	ft.wg.Wait()
}

// complete reports whether every chunk is on disk (its onDone may not
// have run yet): the entry is as good as any cached file.
func (ft *fetcher) complete() bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.left == 0 && ft.err == nil
}
