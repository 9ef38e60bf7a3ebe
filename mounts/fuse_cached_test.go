//go:build linux

package mounts_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/mounts"
	"github.com/sky-coord/sky-coord/mounts/storetest"
)

func TestMountCached(t *testing.T) {
	needFUSE(t)
	st := s3Bucket(t, "cached")
	one := storetest.Random(1 << 20)
	for _, k := range []string{"r/1", "r/2", "r/3"} {
		storetest.Put(t, st, k, one)
	}
	storetest.Put(t, st, "w/existing", []byte("0123456789"))
	cacheDir := t.TempDir()
	dst := filepath.Join(t.TempDir(), "mnt")
	m := mount(t, mounts.MountSpec{Dst: dst, URL: "s3://cached", Mode: mounts.ModeMountCached, Store: st,
		CacheDir: cacheDir, CacheBytes: 5 << 19, ChunkSize: 256 << 10, WriteBack: time.Hour})

	// Reads fill the cache; it stays under its cap by evicting.
	for _, k := range []string{"r/1", "r/2", "r/3", "r/1"} {
		if b, err := os.ReadFile(filepath.Join(dst, k)); err != nil || !bytes.Equal(b, one) {
			t.Fatalf("read %s: %d bytes, %v", k, len(b), err)
		}
	}
	if used := dirSize(t, filepath.Join(cacheDir, "data")); used > 5<<19 {
		t.Errorf("cache holds %d bytes; cap %d", used, 5<<19)
	}

	// Random writes and appends work; nothing goes up before WriteBack
	// (an hour here) or Flush.
	f, err := os.OpenFile(filepath.Join(dst, "w/existing"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("AB"), 3); err != nil {
		t.Fatalf("write inside a file: %v", err)
	}
	f.Close()
	af, err := os.OpenFile(filepath.Join(dst, "w/existing"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	af.WriteString("+tail")
	af.Close()
	if err := os.MkdirAll(filepath.Join(dst, "w/new/deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "w/new/deep/f"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "w/existing")); string(b) != "012AB56789+tail" {
		t.Errorf("cached file reads %q", b)
	}
	if got := storetest.Get(t, st, "w/existing"); string(got) != "0123456789" {
		t.Errorf("bucket changed before write-back: %q", got)
	}
	if diff := cmp.Diff([]string{"existing", "new/"}, readDir(t, filepath.Join(dst, "w"))); diff != "" {
		t.Errorf("listing with files not yet uploaded (-want +got):\n%s", diff)
	}
	if p := m.Pending(); p.Files != 2 || p.Bytes != 15+3 {
		t.Errorf("Pending = %+v; want 2 files, 18 bytes", p)
	}
	var seen []mounts.UploadProgress
	if err := m.Flush(context.Background(), func(p mounts.UploadProgress) { seen = append(seen, p) }); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if len(seen) < 2 || seen[0].Files != 2 || seen[len(seen)-1].Files != 0 {
		t.Errorf("Flush progress %+v; want from 2 files down to 0", seen)
	}
	for k, want := range map[string]string{"w/existing": "012AB56789+tail", "w/new/deep/f": "new"} {
		if got := storetest.Get(t, st, k); string(got) != want {
			t.Errorf("after Flush %s holds %q; want %q", k, got, want)
		}
	}
	// Rename and delete.
	if err := os.Rename(filepath.Join(dst, "w/new/deep/f"), filepath.Join(dst, "w/g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dst, "r/2")); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	keys := storetest.Keys(t, st, "", false)
	keys = slices.DeleteFunc(keys, func(k string) bool { return strings.HasSuffix(k, "/") })
	if diff := cmp.Diff([]string{"r/1", "r/3", "w/existing", "w/g"}, keys); diff != "" {
		t.Errorf("bucket (-want +got):\n%s", diff)
	}
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// gate blocks uploads of one key until opened, and says when one started.
type gate struct {
	key     string
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
}

func newGate(key string) *gate {
	return &gate{key: key, entered: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) write(ctx context.Context, key string) error {
	if key != g.key {
		return nil
	}
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// MOUNT_CACHED durability: an upload stopped midway (the mount goes away
// as a crashing agent's would) is done by the next mount of the same
// cache directory, and Flush does not return before it is.
func TestMountCachedDurability(t *testing.T) {
	needFUSE(t)
	st := s3Bucket(t, "durable")
	cacheDir := t.TempDir()
	dst := filepath.Join(t.TempDir(), "mnt")
	g := newGate("ckpt/model.bin")
	hs := &hookStore{Store: st, write: g.write}
	spec := mounts.MountSpec{Dst: dst, URL: "s3://durable", Mode: mounts.ModeMountCached, Store: hs,
		CacheDir: cacheDir, WriteBack: time.Millisecond}
	log, _ := newTestLogger(t)
	spec.Logger = log
	m, err := mounts.Mount(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	data := storetest.Random(3<<20 + 5)
	if err := os.MkdirAll(filepath.Join(dst, "ckpt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "ckpt/model.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- m.Flush(context.Background(), nil) }()
	<-g.entered // the upload is under way, and blocked
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) while the upload was blocked", err)
	default:
	}
	// The agent dies: nothing more is uploaded.
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Unmount(dead); err == nil || !strings.Contains(err.Error(), "1 files") {
		t.Errorf("Unmount with uploads pending = %v; want an error counting 1 file", err)
	}
	if err := <-flushed; err == nil {
		t.Errorf("Flush returned nil though the upload never finished")
	}
	if ok, _ := mounts.IsMounted(dst); ok {
		t.Fatalf("Unmount left %s mounted", dst)
	}
	if _, err := st.Stat(context.Background(), "ckpt/model.bin"); !errors.Is(err, mounts.ErrNotExist) {
		t.Fatalf("object in the bucket before the restart: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(cacheDir, "journal")); len(ents) != 1 {
		t.Fatalf("journal holds %d records; want 1", len(ents))
	}

	// Restart, uploads still blocked: the file is readable from the cache,
	// and Flush waits.
	g2 := newGate("ckpt/model.bin")
	spec.Store = &hookStore{Store: st, write: g2.write}
	m2 := mount(t, spec)
	if b, err := os.ReadFile(filepath.Join(dst, "ckpt/model.bin")); err != nil || !bytes.Equal(b, data) {
		t.Errorf("after restart the pending file reads %d bytes, %v", len(b), err)
	}
	go func() { flushed <- m2.Flush(context.Background(), nil) }()
	<-g2.entered
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) before the resumed upload finished", err)
	default:
	}
	close(g2.open)
	if err := <-flushed; err != nil {
		t.Fatalf("Flush after the resumed upload: %v", err)
	}
	if got := storetest.Get(t, st, "ckpt/model.bin"); !bytes.Equal(got, data) {
		t.Errorf("resumed upload stored %d bytes that differ from the %d written", len(got), len(data))
	}
	if ents, _ := os.ReadDir(filepath.Join(cacheDir, "journal")); len(ents) != 0 {
		t.Errorf("journal holds %d records after the upload; want 0", len(ents))
	}
}

// ResumeUploads finishes a dead mount's uploads without mounting.
func TestResumeUploads(t *testing.T) {
	needFUSE(t)
	st := mounts.NewLocal(t.TempDir())
	cacheDir := t.TempDir()
	dst := filepath.Join(t.TempDir(), "mnt")
	g := newGate("out.txt")
	spec := mounts.MountSpec{Dst: dst, URL: st.URL(), Mode: mounts.ModeMountCached, Store: &hookStore{Store: st, write: g.write},
		CacheDir: cacheDir, WriteBack: time.Millisecond}
	m := mount(t, spec)
	if err := os.WriteFile(filepath.Join(dst, "out.txt"), []byte("result"), 0o644); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	_ = m.Unmount(dead)

	spec.Store = st
	spec.Logger, _ = newTestLogger(t)
	var last mounts.UploadProgress
	if err := mounts.ResumeUploads(context.Background(), spec, func(p mounts.UploadProgress) { last = p }); err != nil {
		t.Fatalf("ResumeUploads: %v", err)
	}
	if got := storetest.Get(t, st, "out.txt"); string(got) != "result" {
		t.Errorf("bucket holds %q", got)
	}
	if last.Files != 0 {
		t.Errorf("last progress %+v; want 0 files left", last)
	}
}
