package fswatch

import (
	"context"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testDaemon is a Daemon serving on a unix socket, stopped at cleanup.
type testDaemon struct {
	*Daemon
	sock   string
	served chan error // Serve's result
}

// startDaemon starts a Daemon on a unix socket and returns it. It is
// closed when the test ends, and Serve must have returned nil by then.
func startDaemon(t *testing.T, opts Options) *testDaemon {
	t.Helper()
	return startDaemonIn(t, t.TempDir(), opts)
}

// startDaemonIn is startDaemon with the state directory stateDir.
func startDaemonIn(t *testing.T, stateDir string, opts Options) *testDaemon {
	t.Helper()
	d, err := NewDaemon(testLogger(t), stateDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	sock := socketPath(t)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	td := &testDaemon{Daemon: d, sock: sock, served: make(chan error, 1)}
	go func() { td.served <- d.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-td.served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
	})
	return td
}

// socketPath returns a path for a unix socket, removed at cleanup. Socket
// paths are limited to 108 bytes, which t.TempDir's names, made of the
// test's name, can pass.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fswatch")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "sock")
}

// testLogger routes the daemon's logs through t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// newRoot returns a new, symlink-resolved directory to watch.
func newRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// query asks d about root, failing the test on error.
func (d *testDaemon) query(t *testing.T, root, since string) Changes {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Query(ctx, d.sock, root, since)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// register makes the first query about root and returns its token.
func (d *testDaemon) register(t *testing.T, root string) string {
	t.Helper()
	c := d.query(t, root, "")
	if !c.Full || c.Reason != "first query for this root" || c.Token == "" {
		t.Fatalf("first query = %+v, want Full for the first query, with a token", c)
	}
	return c.Token
}

// wantPaths queries d about root since tok, checks the answer names
// exactly want, and returns its token.
func (d *testDaemon) wantPaths(t *testing.T, root, tok string, want ...string) string {
	t.Helper()
	c := d.query(t, root, tok)
	if c.Full {
		t.Fatalf("answer is Full (%s), want paths %q", c.Reason, want)
	}
	if diff := cmp.Diff(want, c.Paths); diff != "" {
		t.Errorf("changed paths (-want +got):\n%s", diff)
	}
	return c.Token
}

// wantFull queries d about root since tok, checks the answer is Full for
// reason, and returns its token.
func (d *testDaemon) wantFull(t *testing.T, root, tok, reason string) string {
	t.Helper()
	c := d.query(t, root, tok)
	if !c.Full || c.Reason != reason || c.Paths != nil {
		t.Errorf("answer = %+v, want Full for %q", c, reason)
	}
	return c.Token
}

// watched returns the watched directories below root, relative to it.
func (d *testDaemon) watched(root string) map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]bool{}
	for p := range d.watches.byPath {
		if rel, ok := relPath(root, p); ok {
			out[rel] = true
		}
	}
	return out
}

// wantWatched fails the test unless the directories watched under root
// are exactly dirs (relative to root, "." for root itself).
func (d *testDaemon) wantWatched(t *testing.T, root string, dirs ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, dir := range dirs {
		want[dir] = true
	}
	if diff := cmp.Diff(want, d.watched(root)); diff != "" {
		t.Errorf("watched directories (-want +got):\n%s", diff)
	}
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// writeFile writes content to root/rel, creating its directory.
func writeFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), 0o644))
}

// scanTree returns every entry below root but .git: files by content and
// mode, directories as "dir", symbolic links by target.
func scanTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if e.Name() == ".git" {
			return filepath.SkipDir
		}
		out[filepath.ToSlash(rel)] = describe(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// describe says what is at p, as scanTree records it ("" when nothing).
func describe(p string) string {
	fi, err := os.Lstat(p)
	switch {
	case err != nil:
		return ""
	case fi.IsDir():
		return "dir"
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(p)
		return "link " + target
	}
	data, _ := os.ReadFile(p)
	return fi.Mode().String() + " " + string(data)
}
