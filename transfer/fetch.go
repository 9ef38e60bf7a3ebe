package transfer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Fetcher brings the chunks a node lacks into its store, from the sources
// that have them, several requests at once.
//
// Peer to peer: the nodes that fetch the same chunks at the same time (the
// workers of a cluster) are listed, in the same order on every node, in
// Peers. Each chunk has an owner among them (its id modulo the number of
// peers). The owner fetches it from the Origins (the head, or for the head
// the coordinator); every other peer fetches it from the owner, whose store
// makes the request wait until the chunk lands. So the origin sends each
// chunk about once, however many peers there are, and every peer serves
// about an equal share. A source that lacks a chunk may be fetching it
// and not have said so yet, so it is asked again with backoff (from 25 ms,
// doubling) for up to PeerWait (a peer) or OriginWait (an origin) before
// the next source is tried; a source that fails is not asked again in this
// fetch. When the chunks to fetch add up to less than PeerMinBytes, the
// peers are skipped: for a small change, asking the origin directly is
// faster than coordinating.
type Fetcher struct {
	// Store is the node's own store, which the chunks go into.
	Store ChunkStore
	// Origins hold every chunk; they are tried in order.
	Origins []Source
	// Peers are all the nodes fetching the same chunks now, this one
	// included at index Self (its entry may be nil). Empty: no peers.
	Peers []Source
	Self  int
	// Parallel is how many requests run at once; zero means 8.
	Parallel int
	// PeerWait and OriginWait bound how long a source that lacks a chunk
	// is asked again before the next one is tried; zero means 1 s for a
	// peer, 30 s for an origin.
	PeerWait   time.Duration
	OriginWait time.Duration
	// PeerMinBytes is the least total that makes a fetch use its peers;
	// zero means 8 MiB, negative means always.
	PeerMinBytes int64
	// Progress receives "fetch" progress: chunks and bytes stored.
	Progress ProgressFunc
}

// FetchStats counts what a Fetch did.
type FetchStats struct {
	Wanted      int   // distinct chunks asked for
	Present     int   // of those, already in the store
	Fetched     int   // chunks stored
	Bytes       int64 // bytes stored
	FromOrigins int   // chunks that came from an origin
	FromPeers   int   // chunks that came from a peer
	Retries     int   // times a chunk was asked for again, of the same source or another
}

// ErrNoSource is wrapped by Fetch's error when a chunk could be found on
// none of the sources.
var ErrNoSource = errors.New("no source holds the chunk")

// Fetch makes sure the store holds every chunk of refs.
func (f *Fetcher) Fetch(ctx context.Context, refs []ChunkRef) (FetchStats, error) {
	var st FetchStats
	sizes := make(map[ChunkID]int64, len(refs))
	ids := make([]ChunkID, 0, len(refs))
	for _, r := range refs {
		if _, ok := sizes[r.ID]; !ok {
			sizes[r.ID] = r.Size
			ids = append(ids, r.ID)
		}
	}
	st.Wanted = len(ids)
	missing, err := f.Store.Missing(ctx, ids)
	if err != nil {
		return st, fmt.Errorf("fetch chunks: check the local store: %w", err)
	}
	st.Present = len(ids) - len(missing)
	if len(missing) == 0 {
		return st, nil
	}
	if ex, ok := f.Store.(expecter); ok {
		release := ex.Expect(missing)
		defer release()
	}
	run := &fetchRun{f: f, ctx: ctx, stats: &st}
	err = run.do(missing, sizes)
	return st, err
}

// fetchSource is one source of a run and what the run knows of it.
type fetchSource struct {
	src    Source
	name   string
	peer   bool
	broken error // set once a request to it failed
}

// fetchItem is one chunk and the sources still to try, in order.
type fetchItem struct {
	ref    ChunkRef
	cands  []candidate
	next   int
	tried  []string      // what each source said, for the final error
	waited time.Duration // on the current origin
}

type candidate struct {
	src int
}

type fetchJob struct {
	src   int
	items []*fetchItem
}

type fetchRun struct {
	f       *Fetcher
	ctx     context.Context
	cancel  context.CancelFunc
	stats   *FetchStats
	sources []*fetchSource
	meter   *meter

	mu          sync.Mutex
	cond        *sync.Cond
	queue       []*fetchJob
	outstanding int // items not yet stored or given up
	err         error
	timers      []*time.Timer
}

func (r *fetchRun) do(missing []ChunkID, sizes map[ChunkID]int64) error {
	f := r.f
	parallel := r.parallel()
	var origins []int
	for _, s := range f.Origins {
		origins = append(origins, len(r.sources))
		r.sources = append(r.sources, &fetchSource{src: s, name: sourceName(s)})
	}
	peerIndex := make([]int, len(f.Peers))
	for i, s := range f.Peers {
		peerIndex[i] = -1
		if i != f.Self && s != nil {
			peerIndex[i] = len(r.sources)
			r.sources = append(r.sources, &fetchSource{src: s, name: sourceName(s), peer: true})
		}
	}

	var total int64
	for _, id := range missing {
		total += sizes[id]
	}
	minPeer := f.PeerMinBytes
	if minPeer == 0 {
		minPeer = 8 << 20
	}
	usePeers := len(f.Peers) > 1 && total >= minPeer
	items := make([]*fetchItem, 0, len(missing))
	for _, id := range missing {
		it := &fetchItem{ref: ChunkRef{ID: id, Size: sizes[id]}}
		if usePeers {
			owner := int(binary.BigEndian.Uint64(id[:8]) % uint64(len(f.Peers)))
			if p := peerIndex[owner]; p >= 0 {
				it.cands = append(it.cands, candidate{src: p})
			}
		}
		for _, o := range origins {
			it.cands = append(it.cands, candidate{src: o})
		}
		if len(it.cands) == 0 {
			return fmt.Errorf("fetch chunk %s: no origin or peer to fetch it from", id)
		}
		items = append(items, it)
	}
	r.meter = newMeter(f.Progress, "fetch", len(items), total)
	r.ctx, r.cancel = context.WithCancel(r.ctx)
	defer r.cancel()
	r.cond = sync.NewCond(&r.mu)
	stop := context.AfterFunc(r.ctx, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer stop()

	r.outstanding = len(items)
	r.mu.Lock()
	r.enqueue(items)
	r.mu.Unlock()

	var wg sync.WaitGroup
	for range parallel {
		wg.Go(r.worker)
	}
	wg.Wait()
	r.mu.Lock()
	for _, t := range r.timers {
		t.Stop()
	}
	err := r.err
	r.mu.Unlock()
	if err == nil {
		err = r.ctx.Err()
	}
	if err != nil {
		return err
	}
	r.meter.done()
	return nil
}

func sourceName(s Source) string {
	if st, ok := s.(fmt.Stringer); ok {
		return st.String()
	}
	return fmt.Sprintf("%T", s)
}

// Batch limits: many small chunks share a request, big ones do not wait
// for each other.
const (
	maxBatchChunks = 512
	maxBatchBytes  = 8 << 20
)

// enqueue groups items by their current candidate source into jobs,
// interleaving the sources so the load spreads. Called with r.mu held.
func (r *fetchRun) enqueue(items []*fetchItem) {
	parallel := r.parallel()
	bySource := make(map[int][]*fetchItem)
	var order []int
	for _, it := range items {
		c := &it.cands[it.next]
		if _, ok := bySource[c.src]; !ok {
			order = append(order, c.src)
		}
		bySource[c.src] = append(bySource[c.src], it)
	}
	var perSource [][]*fetchJob
	for _, src := range order {
		its := bySource[src]
		var bytes int64
		for _, it := range its {
			bytes += it.ref.Size
		}
		// Enough jobs per source to keep the workers busy.
		limit := min(int64(maxBatchBytes), max(64<<10, bytes/int64(parallel)))
		var jobs []*fetchJob
		job := &fetchJob{src: src}
		var jobBytes int64
		for _, it := range its {
			if len(job.items) > 0 && (len(job.items) == maxBatchChunks || jobBytes+it.ref.Size > limit) {
				jobs = append(jobs, job)
				job, jobBytes = &fetchJob{src: src}, 0
			}
			job.items = append(job.items, it)
			jobBytes += it.ref.Size
		}
		perSource = append(perSource, append(jobs, job))
	}
	for i := 0; ; i++ {
		added := false
		for _, jobs := range perSource {
			if i < len(jobs) {
				r.queue = append(r.queue, jobs[i])
				added = true
			}
		}
		if !added {
			break
		}
	}
	r.cond.Broadcast()
}

// later queues items after d. Called with r.mu held.
func (r *fetchRun) later(items []*fetchItem, d time.Duration) {
	r.timers = append(r.timers, time.AfterFunc(d, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.err == nil && r.ctx.Err() == nil {
			r.enqueue(items)
		}
	}))
}

func (r *fetchRun) parallel() int {
	if r.f.Parallel > 0 {
		return r.f.Parallel
	}
	return 8
}

func (r *fetchRun) worker() {
	for {
		r.mu.Lock()
		for len(r.queue) == 0 && r.outstanding > 0 && r.err == nil && r.ctx.Err() == nil {
			r.cond.Wait()
		}
		if len(r.queue) == 0 || r.err != nil || r.ctx.Err() != nil {
			r.mu.Unlock()
			return
		}
		job := r.queue[0]
		r.queue = r.queue[1:]
		r.mu.Unlock()
		r.run(job)
	}
}

// run fetches one job's chunks from its source, and sends those it did
// not get on to their next candidate.
func (r *fetchRun) run(job *fetchJob) {
	src := r.sources[job.src]
	got := make(map[ChunkID]bool, len(job.items))
	byID := make(map[ChunkID]*fetchItem, len(job.items))
	for _, it := range job.items {
		byID[it.ref.ID] = it
	}
	var fatal error
	var reasons map[ChunkID]string
	put := r.f.Store.Put
	var batch chunkBatch
	if bs, ok := r.f.Store.(batchStarter); ok {
		batch = bs.newBatch()
		put = batch.Put
	}
	store := func(id ChunkID, rd io.Reader) error {
		it := byID[id]
		if it == nil || got[id] {
			return nil
		}
		if err := put(r.ctx, id, rd); err != nil {
			if errors.Is(err, ErrChunkCorrupt) {
				// The source sent bad bytes: try elsewhere.
				if reasons == nil {
					reasons = make(map[ChunkID]string)
				}
				reasons[id] = "sent corrupt data"
				return nil
			}
			fatal = err
			return err
		}
		got[id] = true
		r.meter.add(1, it.ref.Size)
		return nil
	}

	var srcErr error
	if bg, ok := src.src.(BatchGetter); ok && len(job.items) > 1 {
		ids := make([]ChunkID, len(job.items))
		for i, it := range job.items {
			ids[i] = it.ref.ID
		}
		srcErr = bg.GetMany(r.ctx, ids, store)
	} else {
		for _, it := range job.items {
			rc, err := src.src.Get(r.ctx, it.ref.ID)
			if errors.Is(err, ErrChunkNotFound) {
				continue
			}
			if err != nil {
				srcErr = err
				break
			}
			err = store(it.ref.ID, rc)
			rc.Close() // read only
			if err != nil {
				srcErr = err
				break
			}
		}
	}

	if batch != nil {
		if fatal != nil {
			batch.Abort()
		} else if err := batch.Commit(); err != nil {
			fatal = err
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if fatal != nil {
		r.fail(fmt.Errorf("fetch chunks: %w", fatal))
		return
	}
	if r.ctx.Err() != nil {
		return
	}
	if srcErr != nil && src.broken == nil {
		src.broken = srcErr
	}
	var retry, wait []*fetchItem
	var backoff time.Duration
	for _, it := range job.items {
		id := it.ref.ID
		if got[id] {
			r.outstanding--
			r.stats.Fetched++
			r.stats.Bytes += it.ref.Size
			if src.peer {
				r.stats.FromPeers++
			} else {
				r.stats.FromOrigins++
			}
			continue
		}
		r.stats.Retries++
		if srcErr == nil && reasons[id] == "" {
			// The source lacks it, maybe for now: ask again a little later.
			if d := lackBackoff(it.waited); it.waited+d <= r.waitFor(src) {
				it.waited += d
				backoff = max(backoff, d)
				wait = append(wait, it)
				continue
			}
		}
		why := "lacks it"
		switch {
		case reasons[id] != "":
			why = reasons[id]
		case srcErr != nil:
			why = srcErr.Error()
		}
		it.tried = append(it.tried, src.name+": "+why)
		// Next candidate, skipping sources that have failed.
		it.next++
		it.waited = 0
		for it.next < len(it.cands) && r.sources[it.cands[it.next].src].broken != nil {
			it.next++
		}
		if it.next == len(it.cands) {
			r.fail(fmt.Errorf("fetch chunk %s: %w (%s)", id, ErrNoSource, strings.Join(it.tried, "; ")))
			return
		}
		retry = append(retry, it)
	}
	if len(retry) > 0 {
		r.enqueue(retry)
	}
	if len(wait) > 0 {
		r.later(wait, backoff)
	}
	if r.outstanding == 0 {
		r.cond.Broadcast()
	}
}

// lackBackoff is the pause before asking a source again, after having
// waited for it so long: 25 ms, doubling up to 2 s.
func lackBackoff(waited time.Duration) time.Duration {
	return min(2*time.Second, max(25*time.Millisecond, waited))
}

func (r *fetchRun) waitFor(src *fetchSource) time.Duration {
	switch {
	case src.peer && r.f.PeerWait > 0:
		return r.f.PeerWait
	case src.peer:
		return time.Second
	case r.f.OriginWait > 0:
		return r.f.OriginWait
	}
	return 30 * time.Second
}

// fail records the run's first error and stops it. Called with r.mu held.
func (r *fetchRun) fail(err error) {
	if r.err == nil {
		r.err = err
		r.cancel()
	}
	r.cond.Broadcast()
}
