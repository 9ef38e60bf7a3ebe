package mounts

import (
	"fmt"
	"io"
	"time"
)

// open returns key's entry, fetching the object when it is not cached.
// remote is the bucket's object (nil when there is none). With write and
// not trunc, it returns once the whole object is on disk.
func (c *cache) open(key string, remote *Entry, write, trunc bool) (*centry, error) {
	c.mu.Lock()
	ce := c.entries[key]
	if ce != nil && !ce.dirty && !ce.uploading && ce.writers == 0 && remote != nil &&
		ce.etag != "" && remote.ETag != "" && ce.etag != remote.ETag {
		c.dropLocked(ce) // the bucket has a newer version
		ce = nil
	}
	if ce == nil {
		var err error
		if ce, err = c.newEntryLocked(key); err != nil {
			c.mu.Unlock()
			return nil, err
		}
		if remote != nil && remote.Size > 0 && !trunc {
			if err := ce.f.Truncate(remote.Size); err != nil {
				c.dropLocked(ce)
				c.mu.Unlock()
				return nil, fmt.Errorf("cache %s in %s: %w", key, c.spec.CacheDir, err)
			}
			ce.size, ce.etag, ce.mtime = remote.Size, remote.ETag, remote.ModTime
			c.used += ce.size
			ce.fetch = c.startFetch(ce)
		} else if remote != nil {
			ce.etag, ce.mtime = remote.ETag, remote.ModTime
		}
		c.evictLocked()
	}
	if ce.fetch != nil && ce.fetch.failed() {
		ce.fetch = c.startFetch(ce) // try again
	}
	ce.opens++
	ce.lastUse = c.nextUse()
	if write {
		ce.writers++
	}
	c.mu.Unlock()
	var err error
	switch {
	case trunc:
		err = c.truncate(ce, 0)
	case write && remote == nil:
		// A new file: it goes up even if nothing is written to it.
		c.mu.Lock()
		err = c.markDirtyLocked(ce)
		c.mu.Unlock()
	case write:
		err = c.waitFetched(ce)
	}
	if err != nil {
		c.release(ce, write)
		return nil, err
	}
	return ce, nil
}

// waitFetched returns once ce's object is wholly on disk.
func (c *cache) waitFetched(ce *centry) error {
	c.mu.Lock()
	ft := ce.fetch
	c.mu.Unlock()
	if ft == nil {
		return nil
	}
	return ft.wait(0, ft.size)
}

// release ends one open of ce.
func (c *cache) release(ce *centry, write bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ce.opens--
	ce.lastUse = c.nextUse()
	if write {
		ce.writers--
		if ce.writers == 0 && ce.dirty {
			ce.due = time.Now().Add(c.spec.WriteBack)
			c.notifyLocked()
		}
	}
	if ce.opens == 0 && ce.fetch != nil && !ce.dirty {
		// Nobody reads it: finish in the background only if it is small.
		if ce.size > 4*c.spec.ChunkSize*int64(c.spec.ReadAhead) {
			c.dropLocked(ce)
			return
		}
	}
	c.releaseFileLocked(ce)
	c.evictLocked()
}

// readAt reads from ce, waiting for the chunks not fetched yet.
func (c *cache) readAt(ce *centry, p []byte, off int64) (int, error) {
	c.mu.Lock()
	ft, f, size := ce.fetch, ce.f, ce.size
	c.mu.Unlock()
	if off >= size {
		return 0, io.EOF
	}
	if ft != nil {
		if err := ft.wait(off, min(int64(len(p)), size-off)); err != nil {
			return 0, err
		}
	}
	n, err := f.ReadAt(p[:min(int64(len(p)), size-off)], off)
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// writeAt writes to ce (wholly fetched: see open).
func (c *cache) writeAt(ce *centry, p []byte, off int64) (int, error) {
	c.mu.Lock()
	if err := c.markDirtyLocked(ce); err != nil {
		c.mu.Unlock()
		return 0, err
	}
	f := ce.f
	c.mu.Unlock()
	n, err := f.WriteAt(p, off)
	c.mu.Lock()
	if end := off + int64(n); end > ce.size {
		c.used += end - ce.size
		ce.size = end
	}
	ce.gen++
	c.evictLocked()
	c.mu.Unlock()
	return n, err
}

// truncate sets ce's size, fetching the object first unless it becomes
// empty.
func (c *cache) truncate(ce *centry, size int64) error {
	c.mu.Lock()
	ft := ce.fetch
	if size == 0 {
		ce.fetch = nil
	}
	c.mu.Unlock()
	if ft != nil {
		if size == 0 {
			ft.stop()
		} else if err := ft.wait(0, ft.size); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.markDirtyLocked(ce); err != nil {
		return err
	}
	if err := ce.f.Truncate(size); err != nil {
		return fmt.Errorf("truncate cached %s: %w", ce.key, err)
	}
	c.used += size - ce.size
	ce.size = size
	c.evictLocked()
	return nil
}
