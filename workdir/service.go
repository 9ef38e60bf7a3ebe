package workdir

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/sky-coord/sky-coord/client"
	"github.com/sky-coord/sky-coord/fswatch"
	"github.com/sky-coord/sky-coord/transfer"
)

// Watcher tells what changed under a root since a token: fswatch.Daemon.
type Watcher interface {
	Query(ctx context.Context, root, since string) (fswatch.Changes, error)
}

const (
	maxRequest  = 16 << 10         // bytes in one request
	readTimeout = 10 * time.Second // to read a request
	// keepTrees bounds the descriptions held in memory (about 200 bytes
	// a file each); the least recently used beyond it is read from its
	// snapshot file again when next asked for.
	keepTrees = 8
	// saveAfter is how long a new description waits before it is
	// written to its snapshot file: the asker's job, which runs in the
	// meantime, is not slowed by it, and the older file is still one
	// that the watcher's changes bring up to date.
	saveAfter = time.Second
)

// Service answers Ask on a socket of the watch daemon's. Its zero value
// is not usable: see NewService.
type Service struct {
	log     *slog.Logger
	watcher Watcher
	program string

	mu       sync.Mutex
	trees    map[string]*treeState // by snapshot file
	store    *coordinatorStore     // the last coordinator uploaded to
	uses     uint64
	saves    sync.WaitGroup // timers writing snapshot files
	stopping chan struct{}  // closed when Serve returns: the timers write now
}

// coordinatorStore is a coordinator's chunk store, kept from one upload
// to the next so that its connections are reused: a re-sync's upload is a
// few small requests, and a new connection (and client) for each was a
// good part of it.
type coordinatorStore struct {
	addr, token string
	store       *transfer.HTTPStore
}

// chunks returns the chunk store of the coordinator at addr, reached with
// token: the one the last upload used when it is the same.
func (s *Service) chunks(addr, token string) *transfer.HTTPStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.store; c != nil && c.addr == addr && c.token == token {
		return c.store
	}
	if s.store != nil {
		s.store.store.CloseIdle() // another coordinator, or a new token
	}
	s.store = &coordinatorStore{addr: addr, token: token, store: client.New(addr, token).Chunks()}
	return s.store.store
}

// treeState is what the Service holds of one tree: its last description,
// with the stat of the snapshot file that description matches.
type treeState struct {
	mu   sync.Mutex // held for a whole request on the tree
	snap *transfer.Snapshot
	file fileStamp
	used uint64 // Service.uses at the last request
}

// fileStamp tells whether a file was replaced or rewritten.
type fileStamp struct {
	ino, size uint64
	mtime     int64
}

func stampOf(file string) (fileStamp, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil {
		return fileStamp{}, false
	}
	return fileStamp{ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim.Nano()}, true
}

// NewService returns a Service that learns changes from w and answers
// only requests from program (the build of the daemon's binary).
func NewService(log *slog.Logger, w Watcher, program string) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{log: log.With("component", "workdir"), watcher: w, program: program, trees: map[string]*treeState{},
		stopping: make(chan struct{})}
}

// Serve answers requests on l until l is closed or ctx ends, then waits
// for the requests in flight (cancelling ctx cancels them) and writes the
// descriptions not written yet. A Service serves once.
func (s *Service) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	var conns sync.WaitGroup
	defer s.flush()
	defer conns.Wait()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept workdir requests: %w", err)
		}
		conns.Go(func() { s.serveConn(ctx, conn) })
	}
}

// serveConn answers the one request on conn. The asker closing the
// connection cancels the work.
func (s *Service) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(readTimeout))
	r := bufio.NewReader(io.LimitReader(conn, maxRequest))
	var req Request
	if err := json.NewDecoder(r).Decode(&req); err != nil {
		writeMessage(conn, message{Error: fmt.Sprintf("read the request: %v", err)})
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The request is all an asker sends: a read that returns means
		// it hung up (or ctx ended and the deferred Close ran).
		_, _ = conn.Read(make([]byte, 1))
		cancel()
	}()
	var out sync.Mutex // progress comes from the upload's goroutines
	send := func(m message) {
		out.Lock()
		defer out.Unlock()
		writeMessage(conn, m)
	}
	switch {
	case req.Version != ProtocolVersion || req.Program != s.program:
		send(message{OtherBuild: true, Fallback: fmt.Sprintf("build %s, protocol %d", s.program, ProtocolVersion)})
	case req.Op == "load":
		s.load(req)
	case req.Op == "upload":
		fallback, err := s.upload(ctx, req, func(p transfer.Progress) { send(message{Progress: &p}) },
			func(res Result) { send(message{Result: &res}) })
		switch {
		case err != nil:
			send(message{Error: err.Error()})
		case fallback != "":
			send(message{Fallback: fallback})
		}
	default:
		send(message{Error: fmt.Sprintf("unknown request %q", req.Op)})
	}
}

func writeMessage(conn net.Conn, m message) {
	_ = conn.SetWriteDeadline(time.Now().Add(readTimeout))
	_ = json.NewEncoder(conn).Encode(m) // an asker that left learns nothing
}

// tree returns the state of the tree whose snapshot is file, locked.
func (s *Service) tree(file string) *treeState {
	s.mu.Lock()
	t := s.trees[file]
	if t == nil {
		t = &treeState{}
		s.trees[file] = t
	}
	s.uses++
	t.used = s.uses
	s.mu.Unlock()
	t.mu.Lock()
	return t
}

// release unlocks t and lets go of the least recently used descriptions
// beyond keepTrees.
func (s *Service) release(t *treeState) {
	t.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.trees) > keepTrees {
		var oldest string
		for f, u := range s.trees {
			if u.used != s.uses && (oldest == "" || u.used < s.trees[oldest].used) {
				oldest = f
			}
		}
		if oldest == "" {
			return
		}
		// A request holding it still finishes, and a description not
		// written yet is written by its timer.
		delete(s.trees, oldest)
	}
}

// saveLater writes snap to file after saveAfter, if t still holds it then:
// not replaced by a newer upload, spent by a failed one, or dropped for a
// file another process wrote.
func (s *Service) saveLater(t *treeState, file string, snap *transfer.Snapshot) {
	s.saves.Go(func() {
		select {
		case <-time.After(saveAfter):
		case <-s.stopping:
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.snap == snap { // not replaced, spent, or read from a newer file since
			t.save(s.log, file)
		}
	})
}

// save writes t's description to file. Called with t.mu held.
func (t *treeState) save(log *slog.Logger, file string) {
	if err := t.snap.Save(file); err != nil {
		// The file keeps an older description, which the watcher's
		// changes since its token still bring up to date.
		log.Warn("keeping the tree's description failed", "snapshot", file, "err", err)
		t.snap = nil
		return
	}
	t.file, _ = stampOf(file)
}

// flush writes, at once, the descriptions that timers are to write, and
// closes the connections kept to the coordinator.
func (s *Service) flush() {
	close(s.stopping)
	s.saves.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		s.store.store.CloseIdle()
	}
}

// current returns t's description, read from file again when the file
// changed since (another process saved one) or none is held; nil when
// there is none to build on.
func (t *treeState) current(file, root string) *transfer.Snapshot {
	st, ok := stampOf(file)
	if !ok || st != t.file || t.snap == nil || t.snap.Root != root {
		// Another process wrote or removed the file since: what it
		// holds now is the truth, and a timer must not write over it.
		t.snap, t.file = nil, st
		if ok {
			t.snap = transfer.LoadSnapshot(file, root)
		}
	}
	return t.snap
}

// load reads a tree's snapshot ahead of its next upload.
func (s *Service) load(req Request) {
	t := s.tree(req.Snapshot)
	defer s.release(t)
	start := time.Now()
	if t.current(req.Snapshot, req.Root) != nil {
		s.log.Info("snapshot read ahead", "root", req.Root, "took", time.Since(start).Round(time.Microsecond))
	}
}

// upload brings the tree's description up to date from the changes the
// watcher reports, uploads what the coordinator lacks, passes the result
// to done, and then saves the new snapshot (the asker need not wait for
// that; the next request on the tree does). A non-empty fallback says
// why it could not, having uploaded nothing that matters.
func (s *Service) upload(ctx context.Context, req Request, progress transfer.ProgressFunc, done func(Result)) (fallback string, err error) {
	t := s.tree(req.Snapshot)
	defer s.release(t)
	start := time.Now()
	snap := t.current(req.Snapshot, req.Root)
	if snap == nil {
		return "no description of the tree to build on", nil
	}
	changes, err := s.watcher.Query(ctx, req.Root, snap.Token)
	if err != nil {
		return fmt.Sprintf("ask the watcher: %v", err), nil
	}
	if changes.Full {
		return "the watcher cannot tell what changed: " + changes.Reason, nil
	}
	base, err := snap.ManifestID()
	if err != nil {
		return fmt.Sprintf("the last description: %v", err), nil
	}
	t.snap = nil // Rebuild spends it; the file still holds it
	parallel := req.Parallel
	if parallel <= 0 {
		parallel = 8
	}
	store := s.chunks(req.Addr, req.Token)
	tree, id, st, err := transfer.RebuildAndUpload(ctx, snap, changes.Paths, transfer.BuildOptions{Progress: progress},
		store, transfer.UploadOptions{Parallel: parallel, Progress: progress})
	if errors.Is(err, transfer.ErrRescan) || errors.Is(err, transfer.ErrBadManifest) {
		return fmt.Sprintf("describe the tree again: %v", err), nil
	}
	if err != nil {
		return "", err
	}
	done(Result{Digest: id.String(), Delta: DeltaFor(tree, base, id), Files: tree.Stats.Files,
		Bytes: tree.Stats.Bytes, Sent: st.Bytes, Changed: len(changes.Paths)})
	t.snap = tree.Snapshot(changes.Token)
	s.saveLater(t, req.Snapshot, t.snap)
	s.log.Info("uploaded", "root", req.Root, "changed", len(changes.Paths), "sent_bytes", st.Bytes,
		"took", time.Since(start).Round(time.Microsecond))
	return "", nil
}

var _ Watcher = (*fswatch.Daemon)(nil)
