package workdir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/fswatch"
	"github.com/sky-coord/sky-coord/transfer"
)

const testToken = "s3cret-token-for-the-test"

// rig is a Service on a socket, beside a real watcher and a coordinator's
// chunk endpoint (a disk store over HTTP that checks the token).
type rig struct {
	root, snap, socket, addr string
	store                    *transfer.DiskStore
	watcher                  *fswatch.Daemon
	logs                     *syncBuffer
	stop                     func()
	conns                    atomic.Int64 // connections the coordinator accepted
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	root, err := filepath.EvalSymlinks(dir)
	must(t, err)
	r := &rig{root: filepath.Join(root, "tree"), snap: filepath.Join(root, "tree.snap"), socket: filepath.Join(root, "workdir.sock"), logs: &syncBuffer{}}
	must(t, os.MkdirAll(filepath.Join(r.root, "src"), 0o755))
	for i := range 20 {
		write(t, filepath.Join(r.root, "src", fmt.Sprintf("f%02d.py", i)), fmt.Sprintf("print(%d)\n", i))
	}
	write(t, filepath.Join(r.root, ".gitignore"), "*.log\n")
	r.store, err = transfer.NewDiskStore(filepath.Join(root, "chunks"))
	must(t, err)
	h := http.StripPrefix("/v1/chunks", transfer.ChunkHandler(r.store, transfer.HandlerOptions{AllowPut: true}))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if api.RequestToken(req) != testToken {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, req)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			r.conns.Add(1)
		}
	}
	srv.Start()
	r.addr = strings.TrimPrefix(srv.URL, "http://")
	log := slog.New(slog.NewTextHandler(r.logs, nil))
	r.watcher, err = fswatch.NewDaemon(log, filepath.Join(root, "watch"), fswatch.Options{})
	must(t, err)
	l, err := net.Listen("unix", r.socket)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewService(log, r.watcher, "test-build").Serve(ctx, l) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			_ = r.watcher.Close()
			srv.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

// describeInFull does what the CLI does without the Service: ask the
// watcher for a token, describe the tree, upload it, save the snapshot.
func (r *rig) describeInFull(t *testing.T) transfer.ChunkID {
	t.Helper()
	ctx := context.Background()
	ch, err := r.watcher.Query(ctx, r.root, "")
	must(t, err)
	tree, id, _, err := transfer.BuildAndUpload(ctx, r.root, transfer.BuildOptions{}, r.store, transfer.UploadOptions{})
	must(t, err)
	must(t, tree.Snapshot(ch.Token).Save(r.snap))
	return id
}

func (r *rig) ask(t *testing.T, program string) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Ask(ctx, r.socket, Request{Program: program, Op: "upload", Root: r.root, Snapshot: r.snap, Addr: r.addr, Token: testToken}, nil)
}

// truth is the id of the tree described afresh.
func (r *rig) truth(t *testing.T) transfer.ChunkID {
	t.Helper()
	tree, err := transfer.BuildManifest(context.Background(), r.root, transfer.BuildOptions{})
	must(t, err)
	id, err := tree.Manifest.ID()
	must(t, err)
	return id
}

// checkStored checks that the coordinator's store holds the manifest id
// and every chunk it names.
func (r *rig) checkStored(t *testing.T, id transfer.ChunkID) transfer.Manifest {
	t.Helper()
	ctx := context.Background()
	m, err := transfer.FetchManifest(ctx, id, r.store)
	must(t, err)
	var ids []transfer.ChunkID
	for _, c := range m.Chunks() {
		ids = append(ids, c.ID)
	}
	missing, err := r.store.Missing(ctx, ids)
	must(t, err)
	if len(missing) > 0 {
		t.Fatalf("the store lacks %d chunks of manifest %s", len(missing), id)
	}
	return m
}

func TestServiceUploadsFromTheDescriptionItHolds(t *testing.T) {
	r := newRig(t)
	if _, err := r.ask(t, "test-build"); !errors.Is(err, ErrFallback) {
		t.Fatalf("with no snapshot yet: %v, want a fallback", err)
	}
	first := r.describeInFull(t)

	base := first
	for step, change := range []func(){
		func() {}, // nothing changed
		func() { write(t, filepath.Join(r.root, "src", "f03.py"), "print('changed')\n") },
		func() {
			write(t, filepath.Join(r.root, "src", "new", "g.py"), strings.Repeat("x", 200_000))
			write(t, filepath.Join(r.root, "debug.log"), "ignored\n")
			must(t, os.Remove(filepath.Join(r.root, "src", "f07.py")))
			must(t, os.Rename(filepath.Join(r.root, "src", "f08.py"), filepath.Join(r.root, "src", "f80.py")))
			must(t, os.Symlink("f80.py", filepath.Join(r.root, "src", "link")))
			must(t, os.Chmod(filepath.Join(r.root, "src", "f09.py"), 0o755))
		},
	} {
		change()
		res, err := r.ask(t, "test-build")
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		want := r.truth(t)
		if res.Digest != want.String() {
			t.Fatalf("step %d: the Service described the tree as %s, a fresh description is %s", step, res.Digest, want)
		}
		m := r.checkStored(t, want)
		if res.Files != countFiles(m) {
			t.Errorf("step %d: %d files reported, the manifest has %d", step, res.Files, countFiles(m))
		}
		switch {
		case step == 0 && (res.Changed != 0 || res.Sent != 0 || res.Delta != nil):
			t.Errorf("nothing changed, yet %+v", res)
		case step > 0 && (res.Changed == 0 || res.Sent == 0 || res.Delta == nil):
			t.Errorf("step %d: a change, yet %+v", step, res)
		}
		if res.Delta != nil {
			d, err := transfer.DecodeDelta(res.Delta)
			must(t, err)
			bm, err := transfer.FetchManifest(context.Background(), base, r.store)
			must(t, err)
			got, err := d.Apply(bm.Entries)
			must(t, err)
			if id, _ := got.ID(); id != want {
				t.Errorf("step %d: the delta leads to %s, not %s", step, id, want)
			}
		}
		base = want
	}

	// The uploads shared their connections to the coordinator.
	if n := r.conns.Load(); n > 2 {
		t.Errorf("3 uploads opened %d connections to the coordinator, want them kept from one upload to the next", n)
	}

	// The snapshot file catches up, at the latest when the Service stops.
	r.stop()
	snap := transfer.LoadSnapshot(r.snap, r.root)
	if snap == nil {
		t.Fatal("no snapshot left after the Service stopped")
	}
	if id, _ := snap.ManifestID(); id != base {
		t.Errorf("the snapshot file describes %s, the last upload %s", id, base)
	}
	if strings.Contains(r.logs.String(), testToken) {
		t.Errorf("the token is in the log:\n%s", r.logs.String())
	}
}

func TestServiceRereadsASnapshotAnotherProcessWrote(t *testing.T) {
	r := newRig(t)
	r.describeInFull(t)
	write(t, filepath.Join(r.root, "src", "a.py"), "a\n")
	one, err := r.ask(t, "test-build") // what one new file costs
	if err != nil {
		t.Fatal(err)
	}
	// The CLI describes the tree itself (say the daemon was busy) and
	// saves its snapshot: the Service must build on that one, not on the
	// description it holds (whose timer must not write over the file).
	write(t, filepath.Join(r.root, "src", "b.py"), "b\n")
	r.describeInFull(t)
	write(t, filepath.Join(r.root, "src", "c.py"), "c\n")
	res, err := r.ask(t, "test-build")
	if err != nil {
		t.Fatal(err)
	}
	if want := r.truth(t); res.Digest != want.String() {
		t.Fatalf("described as %s, a fresh description is %s", res.Digest, want)
	}
	if res.Changed != one.Changed {
		t.Errorf("%d paths looked at again, want %d (c.py and its directory): it built on an older description", res.Changed, one.Changed)
	}
}

func TestServiceFallsBack(t *testing.T) {
	r := newRig(t)
	r.describeInFull(t)
	if _, err := r.ask(t, "another-build"); !errors.Is(err, ErrOtherBuild) {
		t.Errorf("asked by another build: %v, want ErrOtherBuild", err)
	}
	// An ignore file changed: only a full scan knows what it hides now.
	write(t, filepath.Join(r.root, ".gitignore"), "*.log\nsrc/f0*\n")
	if _, err := r.ask(t, "test-build"); !errors.Is(err, ErrFallback) || errors.Is(err, ErrOtherBuild) {
		t.Errorf("after an ignore file changed: %v, want a fallback", err)
	}
	// A daemon that is not there.
	_, err := Ask(context.Background(), filepath.Join(t.TempDir(), "none.sock"), Request{Op: "upload"}, nil)
	if !errors.Is(err, ErrFallback) {
		t.Errorf("with no daemon: %v, want a fallback", err)
	}
}

func TestServiceReportsUploadErrors(t *testing.T) {
	r := newRig(t)
	r.describeInFull(t)
	write(t, filepath.Join(r.root, "src", "a.py"), "a\n")
	ctx := context.Background()
	_, err := Ask(ctx, r.socket, Request{Program: "test-build", Op: "upload", Root: r.root, Snapshot: r.snap, Addr: r.addr, Token: "wrong"}, nil)
	if err == nil || errors.Is(err, ErrFallback) || !strings.Contains(err.Error(), "bad token") {
		t.Fatalf("with a wrong token: %v, want the coordinator's refusal", err)
	}
	// Nothing was lost: the next upload still sees the change.
	res, err := r.ask(t, "test-build")
	if err != nil {
		t.Fatal(err)
	}
	if want := r.truth(t); res.Digest != want.String() || res.Changed == 0 {
		t.Errorf("after a failed upload: %+v, want %s with the change", res, want)
	}
}

func countFiles(m transfer.Manifest) int {
	n := 0
	for _, e := range m.Entries {
		if e.Type == transfer.TypeFile {
			n++
		}
	}
	return n
}

func write(t *testing.T, file, content string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(file), 0o755))
	must(t, os.WriteFile(file, []byte(content), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
