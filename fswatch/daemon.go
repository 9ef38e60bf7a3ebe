// Package fswatch is a per-user daemon that watches directory trees with
// inotify and tells a client which paths under a tree may have changed
// since it last asked, as git's fsmonitor and watchman do, so that
// `sky-coord exec` rescans only those instead of the whole workdir.
//
// Answers err on the safe side: a change made after a token was issued is
// never missing from the answer to a query with that token; paths that did
// not change may be named; and when the daemon cannot tell (first query,
// lost events, a filesystem it does not watch) it answers Full. inotify
// does not see writes through shared memory maps, nor mounts and unmounts
// inside a tree: those go unreported, as they do with watchman.
//
// A client reads an answer so: each path named may have changed in
// content, metadata or existence. A directory named may have gained or lost
// entries, so list it again; the entries it gained are named too, but those
// below a directory that was removed or renamed away are not named one by
// one: drop everything below a path that is no longer a directory.
//
// The daemon serves one JSON request per connection on a unix socket,
// {"root":"/abs","since":"token"} or {"stop":true}, and answers with one
// JSON Changes or {"error":"..."}.
package fswatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Options tunes a Daemon; zero values mean the defaults in parentheses.
type Options struct {
	MaxRoots    int           // roots watched at once; the least recently queried is dropped beyond it (32)
	MaxPaths    int           // changed paths remembered per root; beyond it the root answers Full once (100000)
	IdleTimeout time.Duration // Serve returns nil after no query for this long (0 = never)
}

// cookieTimeout bounds the wait for a query's cookie to come through the
// event queue; past it the answer is Full.
const cookieTimeout = 2 * time.Second

// cookiePrefix starts the names of the cookie files in the state directory.
const cookiePrefix = "cookie."

// Daemon watches the roots it is asked about and answers queries on them.
//
// A query is answered only once its cookie has come through the event
// queue: a file the query creates in the state directory, which is watched
// by the same inotify instance as the roots. Events come in the order
// their changes happened, so every change made before the query was sent
// has been processed by then.
type Daemon struct {
	log        *slog.Logger
	stateDir   string // absolute and symlink-resolved
	opts       Options
	id         string        // this instance's random id, the first half of its tokens
	done       chan struct{} // closed by Close
	readerDone chan struct{} // closed when readEvents returns
	closeOnce  sync.Once
	closeErr   error
	// What keeps Serve from stopping for idleness: queries in flight,
	// and when the last one ended (unix nanoseconds).
	inFlight  atomic.Int64
	lastQuery atomic.Int64

	mu       sync.Mutex
	n        notifier // nil when broken
	broken   string   // why nothing can be watched any more
	closed   bool
	seq      uint64 // counts the events processed, and the resets
	queries  uint64 // counts queries, to find the least recently queried root
	roots    map[string]*root
	watches  watchSet
	stateID  fileID                   // the watched state directory
	cookies  map[string]chan struct{} // cookie file name → closed when its event is processed
	cookieNo uint64
}

// NewDaemon starts watching nothing yet. stateDir is a directory the
// daemon owns (created 0700 if missing): it holds its cookie files.
func NewDaemon(log *slog.Logger, stateDir string, opts Options) (*Daemon, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxRoots <= 0 {
		opts.MaxRoots = 32
	}
	if opts.MaxPaths <= 0 {
		opts.MaxPaths = 100000
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create file watcher state directory: %w", err)
	}
	abs, err := filepath.Abs(stateDir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve file watcher state directory %s: %w", stateDir, err)
	}
	// Cookies a previous daemon left behind (it was killed mid-query).
	old, _ := filepath.Glob(filepath.Join(abs, cookiePrefix+"*"))
	for _, f := range old {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale cookie: %w", err)
		}
	}
	var idBytes [8]byte
	if _, err := rand.Read(idBytes[:]); err != nil {
		return nil, fmt.Errorf("make file watcher instance id: %w", err)
	}
	d := &Daemon{
		log:        log.With("component", "fswatch"),
		stateDir:   abs,
		opts:       opts,
		id:         hex.EncodeToString(idBytes[:]),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		roots:      map[string]*root{},
		watches:    newWatchSet(),
		cookies:    map[string]chan struct{}{},
	}
	n, err := newNotifier()
	switch {
	case errors.Is(err, errNoNotifier):
		d.broken = err.Error()
		close(d.readerDone)
		return d, nil
	case err != nil:
		return nil, err
	}
	d.n = n
	if err := d.watchStateDir(); err != nil {
		_ = n.close() // the error to report is err
		return nil, err
	}
	go d.readEvents()
	return d, nil
}

// Close stops watching and releases the inotify instance.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		d.mu.Lock()
		d.closed = true
		if d.n != nil {
			if err := d.n.close(); err != nil {
				d.closeErr = fmt.Errorf("close inotify instance: %w", err)
			}
		}
		d.mu.Unlock()
		<-d.readerDone
	})
	return d.closeErr
}

// watchStateDir (re)creates the state directory and watches it, unless it
// is watched already. Called with mu held.
func (d *Daemon) watchStateDir() error {
	if _, ok := d.watches.byPath[d.stateDir]; ok {
		if id, ok := idAt(d.stateDir); ok && id == d.stateID {
			return nil
		}
		d.detach(d.stateDir) // replaced or gone
	}
	if err := os.MkdirAll(d.stateDir, 0o700); err != nil {
		return fmt.Errorf("create file watcher state directory: %w", err)
	}
	id, ok := idAt(d.stateDir)
	if !ok {
		return fmt.Errorf("file watcher state directory %s is not a directory", d.stateDir)
	}
	wd, err := d.n.add(d.stateDir)
	if err != nil {
		return fmt.Errorf("watch file watcher state directory %s: %w", d.stateDir, err)
	}
	d.attach(d.stateDir, wd, id)
	d.stateID = id
	return nil
}

// Query answers, in this process, what changed under root since the
// token since, as a query on the socket would; it counts as one for
// IdleTimeout.
func (d *Daemon) Query(ctx context.Context, root, since string) (Changes, error) {
	defer d.busy()()
	return d.query(ctx, root, since)
}

// busy counts a query in flight until the returned func is called; Serve
// does not stop for idleness meanwhile, nor until IdleTimeout after it.
func (d *Daemon) busy() (done func()) {
	d.inFlight.Add(1)
	d.lastQuery.Store(time.Now().UnixNano())
	return func() {
		d.lastQuery.Store(time.Now().UnixNano())
		d.inFlight.Add(-1)
	}
}

// query answers what changed under root since the token since.
func (d *Daemon) query(ctx context.Context, root, since string) (Changes, error) {
	if !filepath.IsAbs(root) || filepath.Clean(root) != root {
		return Changes{}, fmt.Errorf("root %q is not a clean absolute path", root)
	}
	d.mu.Lock()
	c, answered, err := d.prepare(root)
	d.mu.Unlock()
	if answered || err != nil {
		return c, err
	}
	waitErr := d.barrier(ctx)
	if waitErr != nil && ctx.Err() != nil {
		return Changes{}, ctx.Err()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if waitErr != nil {
		d.log.Warn("query answered Full", "root", root, "reason", waitErr)
		return d.full(waitErr.Error()), nil
	}
	return d.answer(root, since)
}

// prepare registers root if it is new, or answers at once when the answer
// must be Full. Called with mu held.
func (d *Daemon) prepare(path string) (c Changes, answered bool, err error) {
	d.queries++
	if d.broken != "" {
		return d.full(d.broken), true, nil
	}
	r := d.roots[path]
	switch {
	case r == nil:
	case r.active() && !sameRoot(r):
		d.forget(r, "the root directory was replaced")
		r = nil
	case !r.active() && time.Now().After(r.retryAt):
		delete(d.roots, path)
		r = nil
	}
	if r == nil {
		why, err := d.register(path)
		return d.full(why), true, err
	}
	r.used = d.queries
	if !r.active() {
		return d.full(r.failed), true, nil
	}
	return Changes{}, false, nil
}

// barrier returns once every change made before it was called has been
// processed, or why it gave up.
func (d *Daemon) barrier(ctx context.Context) error {
	d.mu.Lock()
	if d.broken != "" {
		d.mu.Unlock()
		return errors.New(d.broken)
	}
	if err := d.watchStateDir(); err != nil {
		d.mu.Unlock()
		return err
	}
	d.cookieNo++
	name := cookiePrefix + strconv.Itoa(os.Getpid()) + "." + strconv.FormatUint(d.cookieNo, 10)
	seen := make(chan struct{})
	d.cookies[name] = seen
	d.mu.Unlock()

	file := filepath.Join(d.stateDir, name)
	defer func() {
		d.mu.Lock()
		delete(d.cookies, name)
		d.mu.Unlock()
		if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("removing a cookie failed", "err", err)
		}
	}()
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create cookie: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create cookie: %w", err)
	}
	timer := time.NewTimer(cookieTimeout)
	defer timer.Stop()
	select {
	case <-seen:
		return nil
	case <-timer.C:
		return fmt.Errorf("the event queue did not catch up within %v", cookieTimeout)
	case <-ctx.Done():
		return ctx.Err()
	case <-d.done:
		return errors.New("the daemon is closing")
	}
}
