package fswatch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTooManyPathsAnswersFullOnce(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{MaxPaths: 5})
	root := newRoot(t)
	tok := d.register(t, root)
	for i := range 10 {
		writeFile(t, root, fmt.Sprintf("f%d", i), "x")
	}
	tok = d.wantFull(t, root, tok, "more than 5 paths changed")
	writeFile(t, root, "f3", "y")
	d.wantPaths(t, root, tok, "f3")
}

func TestStop(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{})
	root := newRoot(t)
	d.register(t, root)
	if err := Stop(t.Context(), d.sock); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.served:
		if err != nil {
			t.Errorf("Serve after Stop: %v, want nil", err)
		}
		d.served <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Stop")
	}
	start := time.Now()
	_, err := Query(t.Context(), d.sock, root, "")
	if took := time.Since(start); err == nil || took > 100*time.Millisecond {
		t.Errorf("query to a stopped daemon: %v after %v, want an error within 100ms", err, took)
	}
}

func TestQueryFailsFastWithoutDaemon(t *testing.T) {
	t.Parallel()
	dir := filepath.Dir(socketPath(t))
	// A socket file nobody listens on: connection refused.
	stale := filepath.Join(dir, "stale")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	must(t, err)
	l.SetUnlinkOnClose(false)
	must(t, l.Close())
	for _, sock := range []string{filepath.Join(dir, "missing"), stale} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		start := time.Now()
		_, err := Query(ctx, sock, "/", "")
		took := time.Since(start)
		cancel()
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("query to %s: %v, want no such file or connection refused", sock, err)
		}
		if took > 100*time.Millisecond {
			t.Errorf("query to %s took %v, want under 100ms", sock, took)
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{IdleTimeout: 300 * time.Millisecond})
	root := newRoot(t)
	d.register(t, root)
	select {
	case err := <-d.served:
		if err != nil {
			t.Errorf("Serve after idling: %v, want nil", err)
		}
		d.served <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after IdleTimeout")
	}
}

func TestLeastRecentlyQueriedRootDropped(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{MaxRoots: 2})
	r1, r2, r3 := newRoot(t), newRoot(t), newRoot(t)
	tok1 := d.register(t, r1)
	tok2 := d.register(t, r2)
	d.wantPaths(t, r1, tok1) // r2 is now the least recently queried
	d.register(t, r3)
	if len(d.watched(r2)) != 0 {
		t.Errorf("dropped root %s still watched: %v", r2, d.watched(r2))
	}
	d.wantPaths(t, r1, tok1)
	d.wantFull(t, r2, tok2, "first query for this root")
}

func TestEventQueueOverflow(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Skipf("queue length unknown: %v", err)
	}
	queue, err := strconv.Atoi(strings.TrimSpace(string(data)))
	must(t, err)
	if queue > 1<<20 {
		t.Skipf("event queue of %d is too long to fill", queue)
	}
	d := startDaemon(t, Options{})
	root := newRoot(t)
	writeFile(t, root, "a", "x")
	writeFile(t, root, "b", "x")
	tok := d.register(t, root)
	// Hold the event loop while more events than the queue holds happen.
	// Alternating files keeps the kernel from merging them.
	d.mu.Lock()
	for i := range queue + readBufferSize/16 + 1000 {
		must(t, os.Chmod(filepath.Join(root, string(rune('a'+i%2))), os.FileMode(0o600+i%2)))
	}
	writeFile(t, root, "new/f", "x") // in a directory whose create event is lost
	d.mu.Unlock()
	tok = d.wantFull(t, root, tok, "event queue overflowed")
	writeFile(t, root, "new/f", "y")
	d.wantPaths(t, root, tok, "new/f")
}

func TestConcurrentQueries(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{MaxRoots: 3})
	roots := []string{newRoot(t), newRoot(t), newRoot(t), newRoot(t)}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			root := roots[i%len(roots)]
			tok := ""
			for j := range 20 {
				if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("f%d", i)), []byte{byte(j)}, 0o644); err != nil {
					errs <- err
					return
				}
				c, err := Query(t.Context(), d.sock, root, tok)
				if err != nil {
					errs <- err
					return
				}
				tok = c.Token
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCloseLeavesTreesAlone(t *testing.T) {
	t.Parallel()
	stateDir := t.TempDir()
	d, err := NewDaemon(testLogger(t), stateDir, Options{})
	must(t, err)
	root := newRoot(t)
	writeFile(t, root, "a/b/f", "x")
	before := scanTree(t, root)
	sock := socketPath(t)
	l, err := net.Listen("unix", sock)
	must(t, err)
	served := make(chan error, 1)
	go func() { served <- d.Serve(t.Context(), l) }()
	for range 3 {
		if _, err := Query(t.Context(), sock, root, ""); err != nil {
			t.Fatal(err)
		}
	}
	must(t, d.Close())
	if err := <-served; err != nil {
		t.Errorf("Serve after Close: %v, want nil", err)
	}
	if diff := cmp.Diff(before, scanTree(t, root)); diff != "" {
		t.Errorf("tree after Close (-before +after):\n%s", diff)
	}
	cookies, _ := filepath.Glob(filepath.Join(stateDir, cookiePrefix+"*"))
	if len(cookies) != 0 {
		t.Errorf("cookies left behind: %v", cookies)
	}
}

func TestUnwatchableRoot(t *testing.T) {
	t.Parallel()
	if reason, err := rootReasonForTest("/proc"); err != nil || reason != "filesystem proc is not watched" {
		t.Skipf("/proc is not procfs here: %q, %v", reason, err)
	}
	d := startDaemon(t, Options{})
	want := "filesystem proc is not watched (at /proc)"
	tok := d.wantFull(t, "/proc", "", want)
	d.wantFull(t, "/proc", tok, want)
	if got := d.watched("/proc"); len(got) != 0 {
		t.Errorf("watched below /proc: %v", got)
	}
}

// rootReasonForTest returns why the filesystem of dir is not watched.
func rootReasonForTest(dir string) (string, error) {
	f, err := openDir(dir)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return fsReason(f)
}

func TestStateDirectoryInsideRoot(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	td := startDaemonIn(t, filepath.Join(root, ".state"), Options{})
	tok := td.register(t, root)
	for range 3 {
		tok = td.wantPaths(t, root, tok) // no cookies
	}
	writeFile(t, root, ".state/other", "x")
	td.wantPaths(t, root, tok, ".state", ".state/other")
}

func TestUnwatchableFilesystems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		magic uint32
		want  string
	}{
		{0xEF53, ""},
		{0x58465342, ""},
		{0x9123683E, ""},
		{0x01021994, ""},
		{0xF2F52010, ""},
		{0x794C7630, ""},
		{0x2FC12FC1, ""},
		{0x858458F6, ""},
		{0x6969, "filesystem nfs is not watched"},
		{0x65735546, "filesystem fuse is not watched"},
		{0x01021997, "filesystem 9p is not watched"},
		{0xFF534D42, "filesystem cifs is not watched"},
		{0x12345678, "filesystem with magic number 0x12345678 is not watched"},
	}
	for _, tt := range tests {
		if got := magicReason(tt.magic); got != tt.want {
			t.Errorf("magicReason(%#x) = %q, want %q", tt.magic, got, tt.want)
		}
	}
}
