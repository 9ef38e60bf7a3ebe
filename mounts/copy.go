package mounts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// CopyOptions tune Copy. The zero value is the default.
type CopyOptions struct {
	// Concurrency is the number of ranged reads in flight (default 16).
	Concurrency int
	// PartSize: objects larger than this are read as ranges of this size
	// in parallel (default 16 MiB).
	PartSize int64
	// Progress, when set, is called about every ProgressEvery and once at
	// the end, from one goroutine at a time.
	Progress func(CopyProgress)
	// ProgressEvery defaults to 500ms.
	ProgressEvery time.Duration
}

// CopyProgress counts what Copy has done and has to do.
type CopyProgress struct {
	Files, FilesTotal int
	Bytes, BytesTotal int64
}

// Copy downloads the objects under prefix into the directory dst (COPY
// mode): key prefix+"a/b" becomes dst/a/b. When prefix names one object
// (and no objects lie under prefix+"/"), dst is that object's file. Large
// objects are read as parallel ranges, many small ones in parallel; every
// file's size is checked against the listing. The first object that fails
// fails the copy with its name, and its partial file is removed.
func Copy(ctx context.Context, st Store, prefix, dst string, opts CopyOptions) (CopyProgress, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.PartSize <= 0 {
		opts.PartSize = defaultPartSize
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 500 * time.Millisecond
	}
	files, dirs, err := copyPlan(ctx, st, prefix, dst)
	if err != nil {
		return CopyProgress{}, err
	}
	c := &copier{st: st, opts: opts}
	for _, f := range files {
		c.total.FilesTotal++
		c.total.BytesTotal += f.entry.Size
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return CopyProgress{}, fmt.Errorf("copy %s: %w", st.URL()+"/"+prefix, err)
		}
	}
	stop := c.reportProgress()
	err = c.run(ctx, files)
	stop()
	return c.progress(), err
}

type copyFile struct {
	entry Entry
	path  string
}

// copyPlan lists what to copy: the files, and directories to create for
// directory markers and empty prefixes.
func copyPlan(ctx context.Context, st Store, prefix, dst string) ([]copyFile, []string, error) {
	dirPrefix := prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		e, err := st.Stat(ctx, prefix)
		switch {
		case err == nil:
			if !hasAny(ctx, st, prefix+"/") {
				return []copyFile{{entry: e, path: dst}}, []string{filepath.Dir(dst)}, nil
			}
		case !errors.Is(err, ErrNotExist):
			return nil, nil, fmt.Errorf("copy %s/%s: %w", st.URL(), prefix, err)
		}
		dirPrefix = prefix + "/"
	}
	var files []copyFile
	dirs := []string{dst}
	for e, err := range st.List(ctx, dirPrefix, ListOptions{}) {
		if err != nil {
			return nil, nil, fmt.Errorf("copy %s/%s: %w", st.URL(), dirPrefix, err)
		}
		rel := strings.TrimPrefix(e.Key, dirPrefix)
		if rel == "" {
			continue
		}
		clean := path.Clean(rel)
		if path.IsAbs(rel) || clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, nil, fmt.Errorf("copy %s/%s: key leaves the destination directory; rename the object", st.URL(), e.Key)
		}
		p := filepath.Join(dst, filepath.FromSlash(clean))
		if strings.HasSuffix(rel, "/") {
			dirs = append(dirs, p)
			continue
		}
		files = append(files, copyFile{entry: e, path: p})
	}
	if len(files) == 0 && len(dirs) == 1 && prefix != "" {
		return nil, nil, &storeError{op: "copy", url: st.URL() + "/" + prefix, kind: ErrNotExist,
			err: errors.New("no object has this name or prefix")}
	}
	return files, dirs, nil
}

func hasAny(ctx context.Context, st Store, prefix string) bool {
	for _, err := range st.List(ctx, prefix, ListOptions{}) {
		return err == nil
	}
	return false
}

type copier struct {
	st    Store
	opts  CopyOptions
	total CopyProgress
	bytes atomic.Int64
	files atomic.Int64
	bufs  sync.Pool
}

func (c *copier) progress() CopyProgress {
	p := c.total
	p.Bytes = c.bytes.Load()
	p.Files = int(c.files.Load())
	return p
}

// reportProgress calls opts.Progress on a ticker until the returned stop
// is called, which reports once more.
func (c *copier) reportProgress() (stop func()) {
	if c.opts.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(c.opts.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				c.opts.Progress(c.progress())
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		c.opts.Progress(c.progress())
	}
}

func (c *copier) run(ctx context.Context, files []copyFile) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	for _, f := range files {
		if ctx.Err() != nil {
			break
		}
		out, err := createSized(f.path, f.entry.Size)
		if err != nil {
			// Fails the group, which stops the reads in flight.
			g.Go(func() error { return c.fail(f, err) })
			break
		}
		parts := max(1, (f.entry.Size+c.opts.PartSize-1)/c.opts.PartSize)
		job := &fileJob{f: f, out: out}
		job.left.Store(parts)
		for i := range parts {
			off := i * c.opts.PartSize
			n := min(c.opts.PartSize, f.entry.Size-off)
			g.Go(func() error {
				err := c.readRange(ctx, job, off, n)
				if err == nil && ctx.Err() != nil {
					err = ctx.Err()
				}
				return job.partDone(c, err)
			})
		}
	}
	return g.Wait()
}

func createSized(p string, size int64) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := out.Truncate(size); err != nil {
		out.Close()
		os.Remove(p)
		return nil, err
	}
	return out, nil
}

// fileJob is one file's ranges; the last to finish closes and checks it.
type fileJob struct {
	f      copyFile
	out    *os.File
	left   atomic.Int64
	mu     sync.Mutex
	failed error
}

func (j *fileJob) partDone(c *copier, err error) error {
	j.mu.Lock()
	if err != nil && j.failed == nil {
		j.failed = c.fail(j.f, err)
	}
	failed := j.failed
	j.mu.Unlock()
	if j.left.Add(-1) > 0 {
		return failed
	}
	cerr := j.out.Close()
	if failed == nil && cerr != nil {
		failed = c.fail(j.f, cerr)
	}
	if failed == nil {
		if fi, err := os.Stat(j.f.path); err != nil {
			failed = c.fail(j.f, err)
		} else if fi.Size() != j.f.entry.Size {
			failed = c.fail(j.f, errShort(fi.Size(), j.f.entry.Size))
		}
	}
	if failed != nil {
		os.Remove(j.f.path)
		return failed
	}
	c.files.Add(1)
	return nil
}

func (c *copier) fail(f copyFile, err error) error {
	return fmt.Errorf("copy %s/%s to %s: %w", c.st.URL(), f.entry.Key, f.path, err)
}

// readRange reads [off, off+n) of the object into its file, retrying a
// stream that breaks (the clients retry failed requests, not bodies).
func (c *copier) readRange(ctx context.Context, j *fileJob, off, n int64) error {
	if n == 0 {
		return nil
	}
	buf, _ := c.bufs.Get().(*[]byte)
	if buf == nil {
		b := make([]byte, 1<<20)
		buf = &b
	}
	defer c.bufs.Put(buf)
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		var got int64
		got, err = c.readOnce(ctx, j, off, n, *buf)
		off, n = off+got, n-got
		if err == nil && n == 0 {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("object ended %d bytes early: it changed while being copied?", n)
		}
		if errors.Is(err, ErrNotExist) || errors.Is(err, ErrPermission) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (c *copier) readOnce(ctx context.Context, j *fileJob, off, n int64, buf []byte) (int64, error) {
	rc, err := c.st.Read(ctx, j.f.entry.Key, off, n)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	w := &countingWriter{w: io.NewOffsetWriter(j.out, off), n: &c.bytes}
	got, err := io.CopyBuffer(w, io.LimitReader(rc, n), buf)
	return got, err
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
