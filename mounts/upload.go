package mounts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// pump starts uploads of dirty, closed entries whose time has come, at
// most spec.Transfers at once, until the cache closes.
func (c *cache) pump() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		now := time.Now()
		next := now.Add(time.Hour)
		for _, ce := range c.entries {
			if !ce.dirty || ce.uploading || ce.writers > 0 || ce.removed {
				continue
			}
			// Flush skips the write-back wait, not the back-off after a failure.
			due := ce.due
			if c.flushing > 0 && ce.attempts == 0 {
				due = now
			}
			if due.After(now) {
				if due.Before(next) {
					next = due
				}
				continue
			}
			if c.active >= c.spec.Transfers {
				break
			}
			ce.uploading = true
			c.active++
			c.wg.Go(func() { c.upload(ce) })
		}
		c.mu.Unlock()
		timer.Reset(time.Until(next))
		select {
		case <-c.ctx.Done():
			return
		case <-c.kick:
		case <-timer.C:
		}
	}
}

// upload puts one entry's file in the bucket.
func (c *cache) upload(ce *centry) {
	c.mu.Lock()
	key, gen, size, f := ce.key, ce.gen, ce.size, ce.f
	c.mu.Unlock()
	start := time.Now()
	err := c.st.Write(c.ctx, key, io.NewSectionReader(f, 0, size), size)
	var etag string
	if err == nil {
		if e, serr := c.st.Stat(c.ctx, key); serr == nil && e.Size == size {
			etag = e.ETag
		}
	}
	c.mu.Lock()
	ce.uploading = false
	c.active--
	stale := "" // an object uploaded under a name the file no longer has
	switch {
	case err != nil:
		if c.ctx.Err() == nil {
			ce.attempts++
			ce.due = time.Now().Add(backoff(ce.attempts))
			c.lastErr = err
			c.log.Warn("upload failed; will retry", "object", c.objectURL(key), "attempt", ce.attempts, "retry_in", backoff(ce.attempts).String(), "err", err)
		}
	case ce.removed || ce.key != key:
		stale = key
		ce.due = time.Now()
	case ce.gen != gen:
		ce.due = time.Now() // changed while uploading: again
	default:
		if rerr := removeRecord(c.journalDir, key); rerr != nil {
			c.log.Error("uploaded, but could not clear the journal record: it will upload again", "object", c.objectURL(key), "err", rerr)
		}
		ce.dirty = false
		ce.attempts = 0
		ce.etag = etag
		c.log.Debug("uploaded", "object", c.objectURL(key), "bytes", size, "took", time.Since(start).String())
		if c.pendingLocked().Files == 0 {
			c.lastErr = nil
		}
	}
	c.releaseFileLocked(ce)
	c.evictLocked()
	c.notifyLocked()
	c.mu.Unlock()
	if stale != "" {
		if err := c.st.Delete(c.ctx, stale); err != nil && c.ctx.Err() == nil {
			c.log.Warn("could not delete an object renamed or removed while it uploaded", "object", c.objectURL(stale), "err", err)
		}
	}
}

func backoff(attempts int) time.Duration {
	d := time.Second << min(attempts-1, 5)
	return min(d, 30*time.Second)
}

// flush waits until nothing is dirty; see Mounted.Flush.
func (c *cache) flush(ctx context.Context, progress func(UploadProgress)) error {
	c.mu.Lock()
	c.flushing++
	c.notifyLocked()
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.flushing--
		c.mu.Unlock()
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last UploadProgress
	for first := true; ; first = false {
		if c.ctx.Err() != nil && last.Files > 0 {
			// Closed with uploads pending: what it drops on closing is
			// not uploaded, whatever it counts now.
			return c.pendingError(last, errors.New("the cache was closed"))
		}
		c.mu.Lock()
		p := c.pendingLocked()
		changed := c.changed
		c.mu.Unlock()
		if progress != nil && (first || p != last) {
			progress(p)
		}
		if p.Files == 0 {
			if c.ctx.Err() != nil && last.Files > 0 {
				return c.pendingError(last, errors.New("the cache was closed"))
			}
			return nil
		}
		last = p
		select {
		case <-changed:
		case <-tick.C:
			if progress != nil {
				progress(p)
			}
		case <-ctx.Done():
			return c.pendingError(p, ctx.Err())
		case <-c.ctx.Done():
			return c.pendingError(p, errors.New("the cache was closed"))
		}
	}
}

func (c *cache) pendingError(p UploadProgress, cause error) error {
	msg := fmt.Sprintf("%d files (%d bytes) written to %s are not yet uploaded", p.Files, p.Bytes, c.st.URL())
	if p.Open > 0 {
		msg += fmt.Sprintf(" (%d still open for writing)", p.Open)
	}
	msg += fmt.Sprintf("; they are kept in %s and upload when it is next mounted", c.spec.CacheDir)
	if p.LastError != "" {
		msg += "; last upload error: " + p.LastError
	}
	return fmt.Errorf("%s: %w", msg, cause)
}
