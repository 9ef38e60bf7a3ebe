package mounts_test

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/mounts"
)

// hookStore wraps a Store with hooks that tests use to fail, slow or
// count its calls. A nil hook passes the call through.
type hookStore struct {
	mounts.Store
	read  func(key string, off, length int64) error
	write func(ctx context.Context, key string) error

	inflight, maxInflight atomic.Int64
	reads                 atomic.Int64
}

func (h *hookStore) Read(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	h.reads.Add(1)
	n := h.inflight.Add(1)
	for {
		m := h.maxInflight.Load()
		if n <= m || h.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	if h.read != nil {
		if err := h.read(key, off, length); err != nil {
			h.inflight.Add(-1)
			return nil, err
		}
	}
	// Hold each read a moment, so reads that may overlap do even on a
	// loaded machine where a local read would finish before the next
	// one starts.
	time.Sleep(2 * time.Millisecond)
	rc, err := h.Store.Read(ctx, key, off, length)
	if err != nil {
		h.inflight.Add(-1)
		return nil, err
	}
	return &doneCloser{ReadCloser: rc, done: func() { h.inflight.Add(-1) }}, nil
}

// doneCloser calls done once, on the first Close.
type doneCloser struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (d *doneCloser) Close() error {
	d.once.Do(d.done)
	return d.ReadCloser.Close()
}

func (h *hookStore) Write(ctx context.Context, key string, r io.Reader, size int64) error {
	if h.write != nil {
		if err := h.write(ctx, key); err != nil {
			return err
		}
	}
	return h.Store.Write(ctx, key, r, size)
}

// truncatingStore returns bodies cut short for one key.
type truncatingStore struct {
	mounts.Store
	key string
}

func (s *truncatingStore) Read(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.Store.Read(ctx, key, off, length)
	if err != nil || key != s.key {
		return rc, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, 3), rc}, nil
}

// tree reads every regular file under dir: relative path → content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if rel != "." {
				out[filepath.ToSlash(rel)+"/"] = ""
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLogger routes logs through t.Log and keeps the lines for checks.
type testLogger struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func newTestLogger(t *testing.T) (*slog.Logger, *testLogger) {
	tl := &testLogger{t: t}
	return slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: slog.LevelDebug})), tl
}

func (l *testLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, string(p))
	l.mu.Unlock()
	l.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

func (l *testLogger) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}
