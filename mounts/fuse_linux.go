//go:build linux

package mounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fsys is one MOUNT or MOUNT_CACHED file system: directories are key
// prefixes, files are objects. Directory nodes are shared by both modes;
// files differ in where their bytes live (fusefile_linux.go).
type fsys struct {
	st    Store
	spec  MountSpec
	base  string // key prefix of the root: "" or ending in "/"
	cache *cache // MOUNT_CACHED; nil for MOUNT
	log   *slog.Logger
	stage string // MOUNT: where files being written are staged
	// ctx outlives requests: the kernel interrupts a request whenever its
	// caller gets a signal (Go programs get many), which must not abort
	// an upload or a fetch shared with other readers.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	lists map[string]*listing // directory prefix → its last listing
}

type listing struct {
	at      time.Time
	entries map[string]Entry // name → entry; IsPrefix for directories
}

// server is a mounted fsys.
type server struct {
	srv *fuse.Server
	fs  *fsys
	dst string
}

func mountFUSE(ctx context.Context, st Store, spec MountSpec, loc Location, prefix string, c *cache) (fuseServer, error) {
	log := spec.Logger.With("component", "mounts", "mount", spec.Dst, "bucket", loc.String())
	if ok, err := st.BucketExists(ctx); err != nil {
		return nil, fmt.Errorf("mount %s at %s: %w", loc, spec.Dst, err)
	} else if !ok {
		return nil, fmt.Errorf("mount %s at %s: %w: create it, or check the name", loc, spec.Dst, ErrBucketNotExist)
	}
	if err := detachStale(spec.Dst, log); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(spec.Dst, 0o755); err != nil {
		return nil, fmt.Errorf("mount %s: %w", loc, err)
	}
	f := &fsys{st: st, spec: spec, base: prefix, cache: c, log: log, lists: map[string]*listing{}}
	if c == nil {
		stage, err := os.MkdirTemp(spec.CacheDir, "sky-coord-mount-stage-")
		if err != nil {
			return nil, fmt.Errorf("mount %s at %s: staging directory: %w", loc, spec.Dst, err)
		}
		f.stage = stage
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	ttl := spec.MetadataTTL
	flags := uintptr(syscall.MS_NOSUID | syscall.MS_NODEV)
	if spec.ReadOnly {
		flags |= syscall.MS_RDONLY
	}
	fuseLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:           loc.String(),
			Name:             "sky-coord",
			DirectMount:      true,
			DirectMountFlags: flags,
			AllowOther:       spec.AllowOther || os.Geteuid() == 0,
			MaxWrite:         1 << 20,
			MaxReadAhead:     1 << 20,
			MaxBackground:    64,
			DisableXAttrs:    true,
			// open(O_TRUNC) arrives as one OPEN with O_TRUNC, not an OPEN
			// and a separate truncate.
			ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
			Logger:            fuseLog,
		},
		EntryTimeout: &ttl,
		AttrTimeout:  &ttl,
		UID:          uint32(os.Getuid()),
		GID:          uint32(os.Getgid()),
		Logger:       fuseLog,
	}
	root := &dirNode{fs: f, prefix: prefix}
	srv, err := fs.Mount(spec.Dst, root, opts)
	if err != nil {
		f.cancel()
		if f.stage != "" {
			os.RemoveAll(f.stage)
		}
		return nil, fmt.Errorf("mount %s at %s: %w (FUSE needs /dev/fuse and root, or fusermount3 with /dev/fuse open to the user)", loc, spec.Dst, err)
	}
	log.Info("mounted", "mode", string(spec.Mode))
	return &server{srv: srv, fs: f, dst: spec.Dst}, nil
}

// unmount unmounts, detaching lazily when open files keep it busy, and
// waits for the server to stop.
func (s *server) unmount() error {
	err := s.srv.Unmount()
	if err != nil {
		if derr := syscall.Unmount(s.dst, syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("%w; lazy detach: %w", err, derr)
		}
		s.fs.log.Warn("mount was busy: detached it lazily; it goes when its last open file closes", "err", err)
		err = nil
	}
	s.srv.Wait()
	s.fs.cancel()
	if s.fs.stage != "" {
		os.RemoveAll(s.fs.stage)
	}
	s.fs.log.Info("unmounted")
	return err
}

// dirNode is a directory: a key prefix.
type dirNode struct {
	fs.Inode
	fs     *fsys
	prefix string // "" or ending in "/"
}

var (
	_ fs.NodeLookuper  = (*dirNode)(nil)
	_ fs.NodeReaddirer = (*dirNode)(nil)
	_ fs.NodeGetattrer = (*dirNode)(nil)
	_ fs.NodeSetattrer = (*dirNode)(nil)
	_ fs.NodeCreater   = (*dirNode)(nil)
	_ fs.NodeMkdirer   = (*dirNode)(nil)
	_ fs.NodeUnlinker  = (*dirNode)(nil)
	_ fs.NodeRmdirer   = (*dirNode)(nil)
	_ fs.NodeRenamer   = (*dirNode)(nil)
	_ fs.NodeStatfser  = (*dirNode)(nil)
)

// path is a key's path under the mount, for logs.
func (f *fsys) path(key string) string {
	return path.Join(f.spec.Dst, strings.TrimPrefix(key, f.base))
}

// errno turns a store error into what a system call returns, logging the
// ones that are not plain answers.
func (f *fsys) errno(op, key string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, ErrPermission), errors.Is(err, ErrCredentials):
		f.log.Error(op+" refused by the bucket", "file", f.path(key), "err", err)
		return syscall.EACCES
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	f.log.Error(op+" failed", "file", f.path(key), "err", err)
	return syscall.EIO
}

// list returns a directory's entries, from the last listing while it is
// younger than MetadataTTL.
func (f *fsys) list(ctx context.Context, prefix string, fresh bool) (map[string]Entry, error) {
	f.mu.Lock()
	l := f.lists[prefix]
	f.mu.Unlock()
	if l != nil && !fresh && time.Since(l.at) < f.spec.MetadataTTL {
		return l.entries, nil
	}
	entries := map[string]Entry{}
	for e, err := range f.st.List(ctx, prefix, ListOptions{Delimited: true}) {
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(e.Key[len(prefix):], "/")
		if name == "" || strings.Contains(name, "/") {
			continue // the directory's own marker, or an unusable key
		}
		if old, ok := entries[name]; ok && !old.IsPrefix {
			continue // a file and a directory of one name: the file wins
		}
		entries[name] = e
	}
	f.mu.Lock()
	f.lists[prefix] = &listing{at: time.Now(), entries: entries}
	if len(f.lists) > 64 {
		// Listings past their TTL are never used again: do not keep them.
		for p, l := range f.lists {
			if time.Since(l.at) >= f.spec.MetadataTTL {
				delete(f.lists, p)
			}
		}
	}
	f.mu.Unlock()
	return entries, nil
}

// forget drops a directory's listing after a change to it.
func (f *fsys) forget(prefix string) {
	f.mu.Lock()
	delete(f.lists, prefix)
	f.mu.Unlock()
}

// lookup finds name in a directory: an object, a prefix, or neither.
func (f *fsys) lookup(ctx context.Context, prefix, name string) (Entry, bool, error) {
	f.mu.Lock()
	l := f.lists[prefix]
	f.mu.Unlock()
	if l != nil && time.Since(l.at) < f.spec.MetadataTTL {
		e, ok := l.entries[name]
		return e, ok, nil
	}
	key := prefix + name
	e, err := f.st.Stat(ctx, key)
	if err == nil {
		return e, true, nil
	}
	if !errors.Is(err, ErrNotExist) {
		return Entry{}, false, err
	}
	for _, err := range f.st.List(ctx, key+"/", ListOptions{}) {
		if err != nil {
			return Entry{}, false, err
		}
		return Entry{Key: key + "/", IsPrefix: true}, true, nil
	}
	return Entry{}, false, nil
}

func (f *fsys) dirAttr(out *fuse.Attr) {
	out.Mode = syscall.S_IFDIR | 0o755
	out.Nlink = 2
}

// Getattr implements fs.NodeGetattrer.
func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fs.dirAttr(&out.Attr)
	return 0
}

// Setattr accepts and ignores mode and time changes on directories.
func (d *dirNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	d.fs.dirAttr(&out.Attr)
	return 0
}

// Statfs implements fs.NodeStatfser: a bucket has no size limit worth
// reporting, so report plenty of room.
func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const blocks = 1 << 38 // 1 PiB of 4 KiB blocks
	out.Bsize, out.Frsize = 4096, 4096
	out.Blocks, out.Bfree, out.Bavail = blocks, blocks, blocks
	out.Files, out.Ffree = 1<<40, 1<<40
	out.NameLen = 1024
	return 0
}

// Lookup implements fs.NodeLookuper.
func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	key := d.prefix + name
	// A file this mount is writing is known here before the bucket has it.
	if ch := d.GetChild(name); ch != nil {
		if fn, ok := ch.Operations().(*fileNode); ok && fn.hasLocal() {
			fn.attr(&out.Attr)
			return ch, 0
		}
	}
	if d.fs.cache != nil {
		if size, mtime, ok := d.fs.cache.local(key); ok {
			return d.child(ctx, name, Entry{Key: key, Size: size, ModTime: mtime}, &out.Attr), 0
		}
		if len(d.fs.cache.localUnder(key+"/")) > 0 {
			return d.child(ctx, name, Entry{Key: key + "/", IsPrefix: true}, &out.Attr), 0
		}
	}
	e, ok, err := d.fs.lookup(d.fs.ctx, d.prefix, name)
	if err != nil {
		return nil, d.fs.errno("lookup", key, err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	return d.child(ctx, name, e, &out.Attr), 0
}

// child returns the node for name, reusing the one the tree has when it is
// of the same kind.
func (d *dirNode) child(ctx context.Context, name string, e Entry, attr *fuse.Attr) *fs.Inode {
	if ch := d.GetChild(name); ch != nil {
		switch n := ch.Operations().(type) {
		case *fileNode:
			if !e.IsPrefix {
				n.setRemote(e)
				n.attr(attr)
				return ch
			}
		case *dirNode:
			if e.IsPrefix {
				d.fs.dirAttr(attr)
				return ch
			}
		}
	}
	if e.IsPrefix {
		d.fs.dirAttr(attr)
		return d.NewInode(ctx, &dirNode{fs: d.fs, prefix: d.prefix + name + "/"}, fs.StableAttr{Mode: syscall.S_IFDIR})
	}
	fn := &fileNode{fs: d.fs, key: d.prefix + name}
	fn.setRemote(e)
	fn.attr(attr)
	return d.NewInode(ctx, fn, fs.StableAttr{Mode: syscall.S_IFREG})
}

// Readdir implements fs.NodeReaddirer: the bucket's listing, with the
// files this mount has not uploaded yet.
func (d *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	entries, err := d.fs.list(d.fs.ctx, d.prefix, true)
	if err != nil {
		return nil, d.fs.errno("list", d.prefix, err)
	}
	dirs := map[string]bool{}
	for name, e := range entries {
		dirs[name] = e.IsPrefix
	}
	for name, ch := range d.Children() {
		if fn, ok := ch.Operations().(*fileNode); ok && fn.hasLocal() {
			dirs[name] = false
		}
	}
	if d.fs.cache != nil {
		for name, isDir := range d.fs.cache.localUnder(d.prefix) {
			if _, ok := dirs[name]; !ok || isDir {
				dirs[name] = isDir
			}
		}
	}
	names := make([]string, 0, len(dirs))
	for name := range dirs {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make([]fuse.DirEntry, 0, len(names))
	for _, name := range names {
		mode := uint32(syscall.S_IFREG)
		if dirs[name] {
			mode = syscall.S_IFDIR
		}
		out = append(out, fuse.DirEntry{Name: name, Mode: mode})
	}
	return fs.NewListDirStream(out), 0
}

// Mkdir implements fs.NodeMkdirer with a directory marker object.
func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if d.fs.spec.ReadOnly {
		return nil, syscall.EROFS
	}
	key := d.prefix + name + "/"
	if err := d.fs.st.Write(d.fs.ctx, key, strings.NewReader(""), 0); err != nil {
		return nil, d.fs.errno("mkdir", key, err)
	}
	d.fs.forget(d.prefix)
	return d.child(ctx, name, Entry{Key: key, IsPrefix: true}, &out.Attr), 0
}

// Rmdir implements fs.NodeRmdirer: only a directory holding nothing but
// its marker goes.
func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if d.fs.spec.ReadOnly {
		return syscall.EROFS
	}
	prefix := d.prefix + name + "/"
	if d.fs.cache != nil && len(d.fs.cache.localUnder(prefix)) > 0 {
		return syscall.ENOTEMPTY
	}
	for e, err := range d.fs.st.List(d.fs.ctx, prefix, ListOptions{}) {
		if err != nil {
			return d.fs.errno("rmdir", prefix, err)
		}
		if e.Key != prefix {
			return syscall.ENOTEMPTY
		}
	}
	if err := d.fs.st.Delete(d.fs.ctx, prefix); err != nil {
		return d.fs.errno("rmdir", prefix, err)
	}
	d.fs.forget(d.prefix)
	d.fs.forget(prefix)
	return 0
}

// Unlink implements fs.NodeUnlinker.
func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if d.fs.spec.ReadOnly {
		return syscall.EROFS
	}
	key := d.prefix + name
	if ch := d.GetChild(name); ch != nil {
		if fn, ok := ch.Operations().(*fileNode); ok {
			fn.unlinked()
		}
	}
	if d.fs.cache != nil {
		if err := d.fs.cache.remove(key); err != nil {
			return d.fs.errno("unlink", key, err)
		}
	}
	if err := d.fs.st.Delete(d.fs.ctx, key); err != nil {
		return d.fs.errno("unlink", key, err)
	}
	d.fs.forget(d.prefix)
	return 0
}

// Rename implements fs.NodeRenamer for files (an object copy, then a
// delete). Directories answer EXDEV, on which mv copies and deletes
// them file by file.
func (d *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if d.fs.spec.ReadOnly {
		return syscall.EROFS
	}
	nd, ok := newParent.(*dirNode)
	if !ok || flags&^uint32(unix.RENAME_NOREPLACE) != 0 {
		return syscall.ENOTSUP
	}
	ch := d.GetChild(name)
	if ch == nil {
		return syscall.ENOENT
	}
	fn, ok := ch.Operations().(*fileNode)
	if !ok {
		return syscall.EXDEV
	}
	if flags&unix.RENAME_NOREPLACE != 0 {
		if _, ok, err := d.fs.lookup(d.fs.ctx, nd.prefix, newName); err != nil || ok {
			return syscall.EEXIST
		}
	}
	if errno := fn.rename(nd.prefix + newName); errno != 0 {
		return errno
	}
	d.fs.forget(d.prefix)
	d.fs.forget(nd.prefix)
	return 0
}

// Create implements fs.NodeCreater: a new file, uploaded when closed.
func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if d.fs.spec.ReadOnly {
		return nil, nil, 0, syscall.EROFS
	}
	fn := &fileNode{fs: d.fs, key: d.prefix + name}
	fn.setRemote(Entry{Key: fn.key, ModTime: time.Now()})
	h, errno := fn.openNew(flags)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	fn.attr(&out.Attr)
	d.fs.forget(d.prefix)
	return d.NewInode(ctx, fn, fs.StableAttr{Mode: syscall.S_IFREG}), h, 0, 0
}
