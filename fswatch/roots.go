package fswatch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A root is a directory tree the daemon was asked about. Its lifecycle:
//
//	             first query
//	(unknown) ───────────────► registering ─── a watch failed, or the ───► failed
//	    ▲                       │       ▲       filesystem is not watched    │ │
//	    │     every directory   │       └─── first query after retryAfter ───┘ │
//	    │     watched:          ▼                                              │
//	    │     valid from = ++seq watching ─── a watch failed: to failed        │
//	    │                       │  ▲   │                                       │
//	    │                       │  └───┘ overflow, too many paths:             │
//	    │                       │        valid from = seq                      │
//	    └───────────────────────┴──────────────────────────────────────────────┘
//	      removed, renamed, replaced, or least recently queried beyond MaxRoots
//
// While watching, events record in dirty the sequence number of each
// path's last change; a token at sequence s is answered with the paths
// whose number is above s, or Full when s is below valid from.
type root struct {
	path string
	id   fileID // the directory registered: another one at path means we watch nothing there
	used uint64 // the daemon's query count when last asked about

	failed  string    // not watched: every answer is Full, for this reason
	retryAt time.Time // when failed, the first query after this registers again

	validFrom uint64
	resetWhy  string            // why a token below validFrom gets Full
	dirty     map[string]uint64 // path relative to root → sequence of its last change
}

// retryAfter is how long a root that could not be watched answers Full
// before a query tries to register it again.
const retryAfter = time.Minute

func (r *root) active() bool { return r.failed == "" }

// reset forgets the changed paths: tokens below seq get Full, for why.
func (r *root) reset(seq uint64, why string) {
	r.validFrom = seq
	r.resetWhy = why
	r.dirty = map[string]uint64{}
}

// register starts watching the root at path and returns why the answer to
// this first query is Full. It fails when path is not a symlink-resolved
// directory.
func (d *Daemon) register(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", fmt.Errorf("root %s: %w", path, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("root %s is not a directory", path)
	}
	if resolved, err := filepath.EvalSymlinks(path); err != nil {
		return "", fmt.Errorf("root %s: %w", path, err)
	} else if resolved != path {
		return "", fmt.Errorf("root %s is not symlink-resolved: it leads to %s", path, resolved)
	}
	d.evictFor(path)
	r := &root{path: path, used: d.queries, dirty: map[string]uint64{}}
	r.id.dev, r.id.ino = fileIdentity(fi)
	d.roots[path] = r
	if d.broken != "" {
		d.fail(r, d.broken)
		return r.failed, nil
	}
	start := time.Now()
	if err := d.watchTree(path, unknownDev, false); err != nil {
		d.fail(r, watchFailure(err))
		return r.failed, nil
	}
	if d.roots[path] != r {
		return "the root changed while it was registered", nil
	}
	// Past every token issued so far: none of them saw this registration.
	d.seq++
	r.reset(d.seq, "the token is older than the root's registration")
	d.log.Info("watching root", "root", path, "watches", len(d.watches.byPath), "took", time.Since(start))
	return "first query for this root", nil
}

// watchFailure says why watching a tree failed, for answers.
func watchFailure(err error) string {
	var u *unwatchableError
	if errors.As(err, &u) {
		return u.reason
	}
	return fmt.Sprintf("watching failed: %v (is fs.inotify.max_user_watches too low?)", err)
}

// fail stops watching r, which answers Full for why until retryAfter.
func (d *Daemon) fail(r *root, why string) {
	if r.active() {
		d.unwatchRoot(r)
	}
	d.log.Warn("root not watched", "root", r.path, "reason", why)
	r.failed = why
	r.retryAt = time.Now().Add(retryAfter)
	r.dirty = nil
}

// failContaining fails every watched root holding abs, after err.
func (d *Daemon) failContaining(abs string, err error) {
	for _, r := range d.roots {
		if _, ok := relPath(r.path, abs); ok && r.active() {
			d.fail(r, watchFailure(err))
		}
	}
}

// forget drops r: the next query about it registers it again.
func (d *Daemon) forget(r *root, why string) {
	d.log.Info("forgetting root", "root", r.path, "reason", why)
	if r.active() {
		d.unwatchRoot(r)
	}
	delete(d.roots, r.path)
}

// evictFor makes room for one more root beside path by forgetting the
// least recently queried ones.
func (d *Daemon) evictFor(path string) {
	for len(d.roots) >= d.opts.MaxRoots {
		var oldest *root
		for _, r := range d.roots {
			if r.path != path && (oldest == nil || r.used < oldest.used) {
				oldest = r
			}
		}
		if oldest == nil {
			return
		}
		d.forget(oldest, fmt.Sprintf("more than %d roots", d.opts.MaxRoots))
	}
}

// unwatchRoot removes the watches only r wanted. Directories another root
// wants are kept with all below them, and so is the state directory.
func (d *Daemon) unwatchRoot(r *root) {
	keep := func(p string) bool {
		for _, o := range d.roots {
			if rel, ok := relPath(o.path, p); o != r && ok && o.active() && !hasGitComponent(rel) {
				return false
			}
		}
		return true
	}
	for _, p := range d.subtree(r.path, keep) {
		if p != d.stateDir {
			d.detach(p)
		}
	}
}

// sameRoot reports whether path still leads to the directory r registered:
// renaming a directory above a root raises no event we see.
func sameRoot(r *root) bool {
	id, ok := idAt(r.path)
	return ok && id == r.id
}

// answer is the answer about the root at path to a query with token since,
// once every earlier change has been processed.
func (d *Daemon) answer(path, since string) (Changes, error) {
	r := d.roots[path]
	if r != nil && r.active() && !sameRoot(r) {
		d.forget(r, "the root directory was replaced")
		r = nil
	}
	if r == nil {
		why, err := d.register(path)
		return d.full(why), err
	}
	if !r.active() {
		return d.full(r.failed), nil
	}
	seq, why := d.parseToken(since)
	switch {
	case why != "":
		return d.full(why), nil
	case seq < r.validFrom:
		return d.full(r.resetWhy), nil
	}
	var paths []string
	for p, s := range r.dirty {
		if s > seq {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	return Changes{Token: d.token(), Paths: paths}, nil
}

func (d *Daemon) full(why string) Changes {
	return Changes{Token: d.token(), Full: true, Reason: why}
}

// A token is the daemon instance's id and a sequence number: "id:seq".
func (d *Daemon) token() string { return d.id + ":" + strconv.FormatUint(d.seq, 10) }

// parseToken returns the sequence number in tok, or why it cannot be used.
func (d *Daemon) parseToken(tok string) (uint64, string) {
	if tok == "" {
		return 0, "no token"
	}
	id, s, ok := strings.Cut(tok, ":")
	if !ok {
		return 0, "malformed token"
	}
	if id != d.id {
		return 0, "the token is from another daemon instance"
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	switch {
	case err != nil:
		return 0, "malformed token"
	case seq > d.seq:
		return 0, "the token is from the future"
	}
	return seq, ""
}
