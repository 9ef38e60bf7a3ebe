//go:build linux

package mounts

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fileNode is a file: an object, or one being written.
//
// In MOUNT mode a file opened with O_TRUNC, or created, or empty, is
// written to a staged local file and uploaded whole when closed (on each
// close(2), as Flush; again at the last if written since). Writing inside
// or appending to an object that has content fails with ENOTSUP and a log
// line: objects cannot be changed in place. MOUNT_CACHED files live in
// the cache (cache.go) and take any writes.
type fileNode struct {
	fs.Inode
	fs *fsys

	mu      sync.Mutex
	key     string
	size    int64
	mtime   time.Time
	etag    string
	exists  bool      // the bucket held the object when last asked
	checked time.Time // when the bucket was last asked
	stg     *staged   // MOUNT: new content being written
	gone    bool      // unlinked
}

// staged is MOUNT's new content of one file, shared by the handles that
// write it.
type staged struct {
	f      *os.File
	refs   int
	dirty  bool       // written since the last upload
	upload sync.Mutex // one upload at a time
}

var (
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeSetattrer = (*fileNode)(nil)
	_ fs.NodeOpener    = (*fileNode)(nil)
)

func (n *fileNode) setRemote(e Entry) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.size, n.mtime, n.etag = e.Size, e.ModTime, e.ETag
	n.exists, n.checked = true, time.Now()
}

// hasLocal reports content the bucket does not have yet.
func (n *fileNode) hasLocal() bool {
	n.mu.Lock()
	stg, key := n.stg, n.key
	n.mu.Unlock()
	if stg != nil {
		return true
	}
	if n.fs.cache != nil {
		_, _, ok := n.fs.cache.local(key)
		return ok
	}
	return false
}

func (n *fileNode) attr(out *fuse.Attr) {
	n.mu.Lock()
	size, mtime, stg, key := n.size, n.mtime, n.stg, n.key
	n.mu.Unlock()
	if stg != nil {
		if fi, err := stg.f.Stat(); err == nil {
			size, mtime = fi.Size(), fi.ModTime()
		}
	} else if n.fs.cache != nil {
		if s, m, ok := n.fs.cache.local(key); ok {
			size, mtime = s, m
		}
	}
	out.Mode = syscall.S_IFREG | 0o644
	out.Nlink = 1
	out.Size = uint64(size)
	out.Blocks = (uint64(size) + 511) / 512
	out.SetTimes(nil, &mtime, &mtime)
}

// refresh asks the bucket for the object's size and version when what is
// known is older than MetadataTTL: a file opened after another node closed
// it sees that node's content (close-to-open).
func (n *fileNode) refresh() {
	if n.hasLocal() {
		return
	}
	n.mu.Lock()
	stale, key := time.Since(n.checked) >= n.fs.spec.MetadataTTL, n.key
	n.mu.Unlock()
	if !stale {
		return
	}
	e, err := n.fs.st.Stat(n.fs.ctx, key)
	switch {
	case err == nil:
		n.setRemote(e)
	case errors.Is(err, ErrNotExist):
		n.mu.Lock()
		n.exists, n.checked = false, time.Now()
		n.mu.Unlock()
	}
}

// Getattr implements fs.NodeGetattrer.
func (n *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.refresh()
	n.attr(&out.Attr)
	return 0
}

// Setattr implements fs.NodeSetattrer: truncation is a write; mode, owner
// and time changes are accepted and ignored, as buckets keep none.
func (n *fileNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if n.fs.spec.ReadOnly {
			return syscall.EROFS
		}
		if errno := n.truncate(fh, int64(size)); errno != 0 {
			return errno
		}
	}
	n.attr(&out.Attr)
	return 0
}

func (n *fileNode) truncate(fh fs.FileHandle, size int64) syscall.Errno {
	if c := n.fs.cache; c != nil {
		if h, ok := fh.(*cachedHandle); ok && h.write {
			return n.fs.errno("truncate", h.ce.key, c.truncate(h.ce, size))
		}
		h, errno := n.openCached(true, size == 0)
		if errno != 0 {
			return errno
		}
		err := c.truncate(h.ce, size)
		c.release(h.ce, true)
		return n.fs.errno("truncate", n.key, err)
	}
	n.mu.Lock()
	stg := n.stg
	n.mu.Unlock()
	switch {
	case stg != nil:
		if err := stg.f.Truncate(size); err != nil {
			return n.fs.errno("truncate", n.key, err)
		}
		n.mu.Lock()
		stg.dirty = true
		n.mu.Unlock()
		return 0
	case size != 0:
		return n.refuseWrite("truncate to a size other than 0")
	}
	if h, ok := fh.(*mountHandle); ok && h.write {
		// ftruncate(fd, 0) on a handle opened for writing: a rewrite.
		return h.startRewrite()
	}
	// truncate(path, 0): an empty object now.
	n.mu.Lock()
	key := n.key
	n.mu.Unlock()
	if err := n.fs.st.Write(n.fs.ctx, key, strings.NewReader(""), 0); err != nil {
		return n.fs.errno("truncate", key, err)
	}
	n.setRemote(Entry{Key: key, ModTime: time.Now()})
	return 0
}

// refuseWrite logs and refuses a write MOUNT mode cannot do.
func (n *fileNode) refuseWrite(what string) syscall.Errno {
	n.mu.Lock()
	key := n.key
	n.mu.Unlock()
	n.fs.log.Warn("MOUNT mode cannot "+what+" of an existing object: objects are written whole. Rewrite the file from the start (open it with O_TRUNC), or use MOUNT_CACHED",
		"file", n.fs.path(key), "object", n.fs.st.URL()+"/"+key, "errno", "ENOTSUP")
	return syscall.ENOTSUP
}

// Open implements fs.NodeOpener.
func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	trunc := write && flags&syscall.O_TRUNC != 0
	if write && n.fs.spec.ReadOnly {
		return nil, 0, syscall.EROFS
	}
	n.refresh()
	if n.fs.cache != nil {
		h, errno := n.openCached(write, trunc)
		return h, 0, errno
	}
	if !write {
		return &mountHandle{n: n}, 0, 0
	}
	n.mu.Lock()
	stg, size, exists := n.stg, n.size, n.exists
	n.mu.Unlock()
	h := &mountHandle{n: n, write: true}
	switch {
	case stg != nil || trunc || size == 0 || !exists:
		if errno := h.startRewrite(); errno != 0 {
			return nil, 0, errno
		}
		if trunc {
			if errno := n.truncate(h, 0); errno != 0 {
				h.Release(ctx)
				return nil, 0, errno
			}
		}
	case flags&syscall.O_APPEND != 0:
		return nil, 0, n.refuseWrite("append to the end")
	}
	// Otherwise reads work, and a write fails unless ftruncate(fd, 0)
	// comes first.
	return h, 0, 0
}

// openNew opens a file Create made.
func (n *fileNode) openNew(flags uint32) (fs.FileHandle, syscall.Errno) {
	n.mu.Lock()
	n.exists = false
	n.mu.Unlock()
	if n.fs.cache != nil {
		return n.openCached(true, false)
	}
	h := &mountHandle{n: n, write: true}
	if errno := h.startRewrite(); errno != 0 {
		return nil, errno
	}
	return h, 0
}

func (n *fileNode) openCached(write, trunc bool) (*cachedHandle, syscall.Errno) {
	n.mu.Lock()
	key := n.key
	var remote *Entry
	if n.exists {
		remote = &Entry{Key: key, Size: n.size, ModTime: n.mtime, ETag: n.etag}
	}
	n.mu.Unlock()
	ce, err := n.fs.cache.open(key, remote, write, trunc)
	if err != nil {
		return nil, n.fs.errno("open", key, err)
	}
	return &cachedHandle{n: n, ce: ce, write: write}, 0
}

func (n *fileNode) unlinked() {
	n.mu.Lock()
	n.gone = true
	n.mu.Unlock()
}

// rename moves the file to a new key: a staged or cached file uploads
// under it; an object only in the bucket is copied there. The old object
// is deleted.
func (n *fileNode) rename(newKey string) syscall.Errno {
	n.mu.Lock()
	old, stg := n.key, n.stg
	n.mu.Unlock()
	if stg != nil {
		// An upload in flight writes under the old name: let it finish.
		// One that starts after this writes under the new one.
		stg.upload.Lock()
		defer stg.upload.Unlock()
	}
	n.mu.Lock()
	unsent := stg != nil && stg.dirty
	n.mu.Unlock()
	moved := false
	switch {
	case unsent:
		moved = true // goes up under the new name at close
	case n.fs.cache != nil:
		ok, err := n.fs.cache.rename(old, newKey)
		if err != nil {
			return n.fs.errno("rename", old, err)
		}
		moved = ok
	}
	if !moved {
		var err error
		if c, ok := n.fs.st.(Copier); ok {
			err = c.CopyObject(n.fs.ctx, old, newKey)
		} else {
			err = streamCopy(n.fs.ctx, n.fs.st, old, newKey, n.size)
		}
		if err != nil {
			return n.fs.errno("rename", old, err)
		}
	}
	n.mu.Lock()
	n.key = newKey
	n.mu.Unlock()
	// The old name goes from the bucket (a no-op when it never got there).
	if err := n.fs.st.Delete(n.fs.ctx, old); err != nil {
		return n.fs.errno("rename", old, err)
	}
	return 0
}
