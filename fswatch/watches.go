package fswatch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
)

// notifier is the kernel's change notification (inotify on Linux): one
// instance whose events come in the order they happened.
type notifier interface {
	add(dir string) (wd int32, err error) // watch dir (not following a symbolic link)
	remove(wd int32) error
	read(buf []byte) ([]event, error) // the next events, blocking until there are some
	close() error
}

var errNoNotifier = errors.New("no file change notification")

// event is one notification: name is the entry of the watched directory it
// concerns, "" when it concerns the directory itself.
type event struct {
	wd   int32
	op   op
	name string
}

// op is a set of what an event says happened.
type op uint32

const (
	opCreate     op = 1 << iota // an entry was created
	opMovedTo                   // an entry was renamed into the directory
	opWrite                     // a file was written
	opAttrib                    // mode, owner, times or links changed
	opDelete                    // an entry was removed
	opMovedFrom                 // an entry was renamed away
	opDeleteSelf                // the watched directory was removed
	opMoveSelf                  // the watched directory was renamed
	opUnmount                   // its filesystem was unmounted
	opIgnored                   // the watch is gone
	opOverflow                  // events were lost
	opIsDir                     // the entry is a directory
)

// watchSet maps between watched directories and watch descriptors. One
// descriptor can stand for several paths when a directory is reached by
// more than one (a bind mount).
type watchSet struct {
	byPath   map[string]int32
	byWd     map[int32]*watch
	children map[string]map[string]struct{} // directory → its watched subdirectories
}

// watch is one inotify watch: the directory it is on, and its paths.
type watch struct {
	id    fileID
	paths []string
}

// fileID names a file: its device and inode.
type fileID struct{ dev, ino uint64 }

// idAt returns the fileID of what is at path, not following a symbolic
// link there, and whether it is a directory.
func idAt(path string) (fileID, bool) {
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() {
		return fileID{}, false
	}
	dev, ino := fileIdentity(fi)
	return fileID{dev, ino}, true
}

func newWatchSet() watchSet {
	return watchSet{byPath: map[string]int32{}, byWd: map[int32]*watch{}, children: map[string]map[string]struct{}{}}
}

// joinPath joins an absolute directory and an entry name.
func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// parentDir returns the directory holding abs ("/" for "/").
func parentDir(abs string) string {
	i := strings.LastIndexByte(abs, '/')
	if i <= 0 {
		return "/"
	}
	return abs[:i]
}

// relPath returns abs relative to root, "." for root itself, and whether
// abs is root or below it.
func relPath(root, abs string) (string, bool) {
	switch {
	case abs == root:
		return ".", true
	case root == "/":
		return abs[1:], true
	case strings.HasPrefix(abs, root) && len(abs) > len(root) && abs[len(root)] == '/':
		return abs[len(root)+1:], true
	}
	return "", false
}

// hasGitComponent reports whether rel is, or is inside, a directory named
// .git: those are never watched nor reported.
func hasGitComponent(rel string) bool {
	for c := range strings.SplitSeq(rel, "/") {
		if c == ".git" {
			return true
		}
	}
	return false
}

// attach records that dir, the directory id, is watched by wd. A
// descriptor the kernel returns for another path too means one directory
// under two paths: a path that still leads to it is kept (a bind mount),
// one that does not is stale (the directory was renamed and we have not
// processed that event yet) and is dropped with everything below it.
func (d *Daemon) attach(dir string, wd int32, id fileID) {
	w := &d.watches
	if old, ok := w.byPath[dir]; ok {
		if old == wd {
			return
		}
		d.detach(dir) // the directory at dir was replaced
	}
	ww := w.byWd[wd]
	if ww == nil {
		ww = &watch{id: id}
		w.byWd[wd] = ww
	}
	others := ww.paths
	ww.paths = append(slices.Clip(others), dir)
	w.byPath[dir] = wd
	parent := parentDir(dir)
	if w.children[parent] == nil {
		w.children[parent] = map[string]struct{}{}
	}
	w.children[parent][dir] = struct{}{}
	for _, other := range others {
		if there, ok := idAt(other); !ok || there != ww.id {
			d.log.Debug("dropping a stale watch path", "path", other, "now", dir)
			d.markPath(other, true)
			d.dropTree(other, dir)
		}
	}
}

// detach stops watching dir, and releases its descriptor when no other
// path uses it.
func (d *Daemon) detach(dir string) {
	w := &d.watches
	wd, ok := w.byPath[dir]
	if !ok {
		return
	}
	delete(w.byPath, dir)
	parent := parentDir(dir)
	delete(w.children[parent], dir)
	if len(w.children[parent]) == 0 {
		delete(w.children, parent)
	}
	ww := w.byWd[wd]
	ww.paths = slices.DeleteFunc(ww.paths, func(p string) bool { return p == dir })
	if len(ww.paths) > 0 {
		return
	}
	delete(w.byWd, wd)
	if d.n != nil {
		// EINVAL: the kernel dropped it already (the directory is gone).
		if err := d.n.remove(wd); err != nil && !errors.Is(err, syscall.EINVAL) {
			d.log.Warn("removing a watch failed", "path", dir, "err", err)
		}
	}
}

// subtree returns the watched directories at and below dir that keep
// says to visit (nil keep: all), dir first. keep is not asked about what
// lies below a directory it refuses.
func (d *Daemon) subtree(dir string, keep func(string) bool) []string {
	var out []string
	stack := []string{dir}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if keep != nil && !keep(p) {
			continue
		}
		if _, ok := d.watches.byPath[p]; ok {
			out = append(out, p)
		}
		for c := range d.watches.children[p] {
			stack = append(stack, c)
		}
	}
	return out
}

// dropTree stops watching abs and everything below it, which are gone or
// renamed away, save the directory except ("" for none) and what lies below
// it, and forgets the roots there.
func (d *Daemon) dropTree(abs, except string) {
	for _, p := range d.subtree(abs, func(p string) bool { return p != except }) {
		d.detach(p)
	}
	for _, r := range d.roots {
		if _, ok := relPath(abs, r.path); ok {
			d.log.Info("root removed or renamed; forgetting it", "root", r.path)
			delete(d.roots, r.path)
		}
	}
}

// wanted reports whether some watched root wants abs watched.
func (d *Daemon) wanted(abs string) bool {
	for _, r := range d.roots {
		if rel, ok := relPath(r.path, abs); ok && r.active() && !hasGitComponent(rel) {
			return true
		}
	}
	return false
}

// markPath records that abs, and with parent its directory, changed at the
// current sequence number, in every root holding them.
func (d *Daemon) markPath(abs string, parent bool) {
	for _, r := range d.roots {
		if !r.active() {
			continue
		}
		d.mark(r, abs)
		if parent && abs != r.path {
			d.mark(r, parentDir(abs))
		}
	}
}

func (d *Daemon) mark(r *root, abs string) {
	rel, ok := relPath(r.path, abs)
	if !ok || hasGitComponent(rel) {
		return
	}
	r.dirty[rel] = d.seq
	if len(r.dirty) > d.opts.MaxPaths {
		// Tokens from before this event now get Full; later ones need none
		// of the paths forgotten here.
		d.log.Info("too many changed paths; the next query gets a full rescan", "root", r.path, "max", d.opts.MaxPaths)
		r.reset(d.seq, fmt.Sprintf("more than %d paths changed", d.opts.MaxPaths))
	}
}

// unknownDev stands for a device no directory is on: a walk starting at
// a directory whose parent's device is not known checks its filesystem.
const unknownDev = ^uint64(0)

// unwatchableError says a tree reaches onto a filesystem that is not watched.
type unwatchableError struct{ reason string }

func (e *unwatchableError) Error() string { return e.reason }

// watchTree watches top and every directory below it that a root wants,
// each before listing it, so that nothing created meanwhile is missed. With
// mark, everything found below top is marked changed: top was just created
// or moved in, and what it holds raised no events. topDev is the device of
// top's parent; a directory on another device has its filesystem checked.
// Entries that vanish meanwhile, and directories we may not read, are
// passed over.
func (d *Daemon) watchTree(top string, topDev uint64, mark bool) error {
	type dir struct {
		path      string
		parentDev uint64
	}
	stack := []dir{{top, topDev}}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !d.wanted(p.path) {
			continue
		}
		entries, id, err := d.watchDir(p.path, p.parentDev)
		if skip, err := d.passOver(p.path, err); err != nil {
			return err
		} else if skip {
			continue
		}
		for _, e := range entries {
			child := joinPath(p.path, e.Name())
			if mark {
				d.markPath(child, false)
			}
			if e.IsDir() { // from the directory entry: a symbolic link is not one
				stack = append(stack, dir{child, id.dev})
			}
		}
	}
	return nil
}

// watchDir watches dir, then lists it. It opens dir first, without
// following a symbolic link, to learn which directory the watch is on and
// to check its filesystem when it is not on parentDev; it holds it open
// only while it reads.
func (d *Daemon) watchDir(dir string, parentDev uint64) ([]fs.DirEntry, fileID, error) {
	f, err := openDir(dir)
	if err != nil {
		return nil, fileID{}, err
	}
	defer f.Close() // read only
	fi, err := f.Stat()
	if err != nil {
		return nil, fileID{}, err
	}
	var id fileID
	id.dev, id.ino = fileIdentity(fi)
	if id.dev != parentDev {
		reason, err := fsReason(f)
		if err != nil {
			return nil, fileID{}, err
		}
		if reason != "" {
			return nil, fileID{}, &unwatchableError{reason: fmt.Sprintf("%s (at %s)", reason, dir)}
		}
	}
	wd, err := d.n.add(dir)
	if err != nil {
		return nil, fileID{}, fmt.Errorf("watch directory %s: %w", dir, err)
	}
	d.attach(dir, wd, id)
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, fileID{}, fmt.Errorf("list directory %s: %w", dir, err)
	}
	return entries, id, nil
}

// passOver sorts an error met while watching dir: nil, one to pass over
// (the directory went away, became a symbolic link or a file, or may not be
// read), or one that stops the walk.
func (d *Daemon) passOver(dir string, err error) (skip bool, _ error) {
	var unwatchable *unwatchableError
	switch {
	case err == nil:
		return false, nil
	case errors.As(err, &unwatchable):
		return false, err
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ELOOP):
		return true, nil
	case errors.Is(err, fs.ErrPermission):
		d.log.Debug("directory not readable; not watched", "path", dir, "err", err)
		return true, nil
	}
	return false, err
}
