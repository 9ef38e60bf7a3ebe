package mounts

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// rangeReader serves MOUNT's reads of one open object through ranged
// reads of whole chunks. A reader going forward gets the next chunks
// fetched ahead of it, several at once; a reader jumping around gets only
// the chunks it touches.
type rangeReader struct {
	st     Store
	key    string
	url    string
	size   int64
	chunk  int64
	window int // chunks fetched ahead of a sequential reader
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	chunks map[int64]*raChunk
	next   int64 // where a sequential reader reads next
}

type raChunk struct {
	done chan struct{}
	data []byte
	err  error
}

func newRangeReader(ctx context.Context, st Store, key string, size, chunk int64, window int) *rangeReader {
	r := &rangeReader{st: st, key: key, url: st.URL() + "/" + key, size: size, chunk: chunk, window: window, chunks: map[int64]*raChunk{}}
	r.ctx, r.cancel = context.WithCancel(ctx)
	return r
}

// ReadAt reads like io.ReaderAt.
func (r *rangeReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), r.size)
	n := 0
	for pos := off; pos < end; {
		idx := pos / r.chunk
		c := r.want(idx, off, end)
		select {
		case <-c.done:
		case <-r.ctx.Done():
			return n, r.ctx.Err()
		}
		if c.err != nil {
			r.mu.Lock()
			if r.chunks[idx] == c {
				delete(r.chunks, idx) // the next read tries again
			}
			r.mu.Unlock()
			return n, c.err
		}
		start := pos - idx*r.chunk
		stop := min(end-idx*r.chunk, int64(len(c.data)))
		if start >= stop {
			break // the object is shorter than it was said to be
		}
		n += copy(p[n:], c.data[start:stop])
		pos = idx*r.chunk + stop
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// want returns chunk idx, fetching it (and, for a sequential reader, the
// ones after it) when needed, and drops chunks the reader has left.
func (r *rangeReader) want(idx, off, end int64) *raChunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Near the last position counts as sequential: the kernel sends a
	// file's reads several at once, a little out of order.
	seq := off == 0 || (off >= r.next-r.chunk && off <= r.next+r.chunk)
	if seq {
		r.next = max(r.next, end)
	} else {
		r.next = end
	}
	ahead := int64(0)
	if seq {
		ahead = int64(r.window)
	}
	for i := range r.chunks {
		if i < idx-1 || i > idx+max(ahead, 1) {
			delete(r.chunks, i)
		}
	}
	last := (r.size - 1) / r.chunk
	for i := idx; i <= min(idx+ahead, last); i++ {
		if r.chunks[i] == nil {
			c := &raChunk{done: make(chan struct{})}
			r.chunks[i] = c
			go r.fetch(i, c)
		}
	}
	return r.chunks[idx]
}

func (r *rangeReader) fetch(idx int64, c *raChunk) {
	defer close(c.done)
	off := idx * r.chunk
	n := min(r.chunk, r.size-off)
	buf := make([]byte, n)
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-r.ctx.Done():
				c.err = r.ctx.Err()
				return
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		var rc io.ReadCloser
		rc, c.err = r.st.Read(r.ctx, r.key, off, n)
		if c.err != nil {
			continue
		}
		var got int
		got, c.err = io.ReadFull(rc, buf)
		rc.Close()
		if c.err == io.ErrUnexpectedEOF || c.err == io.EOF {
			// Shorter than its size said: it changed since it was opened.
			c.data, c.err = buf[:got], nil
			return
		}
		if c.err == nil {
			c.data = buf
			return
		}
	}
	c.err = fmt.Errorf("read %s at %d: %w", r.url, off, c.err)
}

// Close stops the fetches in flight.
func (r *rangeReader) Close() {
	r.cancel()
}
