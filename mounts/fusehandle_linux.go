//go:build linux

package mounts

import (
	"context"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// mountHandle is an open MOUNT file.
type mountHandle struct {
	n     *fileNode
	write bool

	mu  sync.Mutex
	stg *staged      // held while this handle writes new content
	rd  *rangeReader // remote reads, made at the first
}

var (
	_ fs.FileReader   = (*mountHandle)(nil)
	_ fs.FileWriter   = (*mountHandle)(nil)
	_ fs.FileFlusher  = (*mountHandle)(nil)
	_ fs.FileFsyncer  = (*mountHandle)(nil)
	_ fs.FileReleaser = (*mountHandle)(nil)
)

// startRewrite makes h write new content for its file, sharing the
// node's staged file when another handle has one.
func (h *mountHandle) startRewrite() syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stg != nil {
		return 0
	}
	n := h.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stg == nil {
		f, err := os.CreateTemp(n.fs.stage, "w-")
		if err != nil {
			n.fs.log.Error("cannot stage a file being written", "file", n.fs.path(n.key), "err", err)
			return syscall.EIO
		}
		os.Remove(f.Name()) // lives as long as it is open
		n.stg = &staged{f: f, dirty: true}
	}
	n.stg.refs++
	h.stg = n.stg
	return 0
}

// Read implements fs.FileReader.
func (h *mountHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n := h.n
	n.mu.Lock()
	stg, size, key := n.stg, n.size, n.key
	n.mu.Unlock()
	if stg != nil {
		got, err := stg.f.ReadAt(dest, off)
		if err != nil && err != io.EOF {
			return nil, n.fs.errno("read", key, err)
		}
		return fuse.ReadResultData(dest[:got]), 0
	}
	h.mu.Lock()
	if h.rd == nil || h.rd.key != key {
		if h.rd != nil {
			h.rd.Close()
		}
		h.rd = newRangeReader(n.fs.ctx, n.fs.st, key, size, n.fs.spec.ChunkSize, n.fs.spec.ReadAhead)
	}
	rd := h.rd
	h.mu.Unlock()
	got, err := rd.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, n.fs.errno("read", key, err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// Write implements fs.FileWriter.
func (h *mountHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write {
		return 0, syscall.EBADF
	}
	h.mu.Lock()
	stg := h.stg
	h.mu.Unlock()
	if stg == nil {
		// Opened without O_TRUNC on an object with content: join a
		// rewrite another handle started, or refuse.
		// An object emptied by truncate(2) after this open is rewritten too.
		h.n.mu.Lock()
		rewriting := h.n.stg != nil || h.n.size == 0
		h.n.mu.Unlock()
		if !rewriting {
			return 0, h.n.refuseWrite("write inside")
		}
		if errno := h.startRewrite(); errno != 0 {
			return 0, errno
		}
		stg = h.stg
	}
	got, err := stg.f.WriteAt(data, off)
	h.n.mu.Lock()
	stg.dirty = true
	h.n.mu.Unlock()
	if err != nil {
		return uint32(got), h.n.fs.errno("write", h.n.key, err)
	}
	return uint32(got), 0
}

// Flush implements fs.FileFlusher: close(2) uploads what was written.
func (h *mountHandle) Flush(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	stg := h.stg
	h.mu.Unlock()
	if stg == nil {
		return 0
	}
	return h.n.upload(stg)
}

// Fsync implements fs.FileFsyncer: as Flush.
func (h *mountHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.Flush(ctx)
}

// Release implements fs.FileReleaser.
func (h *mountHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	stg, rd := h.stg, h.rd
	h.stg, h.rd = nil, nil
	h.mu.Unlock()
	if rd != nil {
		rd.Close()
	}
	if stg == nil {
		return 0
	}
	n := h.n
	n.mu.Lock()
	stg.refs--
	last := stg.refs == 0
	n.mu.Unlock()
	if !last {
		return 0
	}
	// Normally Flush uploaded already; this catches writes after it.
	errno := n.upload(stg)
	if errno != 0 {
		n.fs.log.Error("a file written under the mount was not uploaded, and its content is lost", "file", n.fs.path(n.key))
	}
	n.mu.Lock()
	if n.stg == stg {
		n.stg = nil
	}
	n.mu.Unlock()
	stg.f.Close()
	return errno
}

// upload puts the staged content in the bucket when it changed since the
// last upload.
func (n *fileNode) upload(stg *staged) syscall.Errno {
	stg.upload.Lock()
	defer stg.upload.Unlock()
	n.mu.Lock()
	if !stg.dirty || n.gone {
		n.mu.Unlock()
		return 0
	}
	stg.dirty = false
	key := n.key
	n.mu.Unlock()
	fi, err := stg.f.Stat()
	if err == nil {
		err = n.fs.st.Write(n.fs.ctx, key, io.NewSectionReader(stg.f, 0, fi.Size()), fi.Size())
	}
	if err != nil {
		n.mu.Lock()
		stg.dirty = true
		n.mu.Unlock()
		n.fs.log.Error("upload on close failed", "file", n.fs.path(key), "object", n.fs.st.URL()+"/"+key, "err", err)
		return syscall.EIO
	}
	n.mu.Lock()
	n.size, n.mtime, n.etag, n.exists, n.checked = fi.Size(), time.Now(), "", true, time.Now()
	n.mu.Unlock()
	n.fs.forget(parentPrefix(key))
	return 0
}

func parentPrefix(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '/' {
			return key[:i+1]
		}
	}
	return ""
}

// cachedHandle is an open MOUNT_CACHED file.
type cachedHandle struct {
	n     *fileNode
	ce    *centry
	write bool
	once  sync.Once
}

var (
	_ fs.FileReader   = (*cachedHandle)(nil)
	_ fs.FileWriter   = (*cachedHandle)(nil)
	_ fs.FileFsyncer  = (*cachedHandle)(nil)
	_ fs.FileReleaser = (*cachedHandle)(nil)
)

// Read implements fs.FileReader.
func (h *cachedHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	got, err := h.n.fs.cache.readAt(h.ce, dest, off)
	if err != nil && err != io.EOF {
		return nil, h.n.fs.errno("read", h.ce.key, err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// Write implements fs.FileWriter.
func (h *cachedHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write {
		return 0, syscall.EBADF
	}
	got, err := h.n.fs.cache.writeAt(h.ce, data, off)
	if err != nil {
		return uint32(got), h.n.fs.errno("write", h.ce.key, err)
	}
	return uint32(got), 0
}

// Fsync implements fs.FileFsyncer: the cached file reaches the disk.
func (h *cachedHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	h.n.fs.cache.mu.Lock()
	f := h.ce.f
	h.n.fs.cache.mu.Unlock()
	if f == nil {
		return 0
	}
	return h.n.fs.errno("fsync", h.ce.key, f.Sync())
}

// Release implements fs.FileReleaser: a file closed after writing
// uploads after WriteBack.
func (h *cachedHandle) Release(ctx context.Context) syscall.Errno {
	h.once.Do(func() { h.n.fs.cache.release(h.ce, h.write) })
	return 0
}
