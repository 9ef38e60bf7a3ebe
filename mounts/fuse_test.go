//go:build linux

package mounts_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/mounts"
	"github.com/sky-coord/sky-coord/mounts/storetest"
	"github.com/sky-coord/sky-coord/testenv/objstore"
)

// needFUSE skips tests that mount when this process cannot.
func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("FUSE tests mount without fusermount3 and so need root (CI runs as root)")
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("FUSE tests need /dev/fuse: %v", err)
	}
	f.Close()
}

// mount mounts spec for the test and checks at its end that Unmount left
// no mount behind.
func mount(t *testing.T, spec mounts.MountSpec) *mounts.Mounted {
	t.Helper()
	if spec.Logger == nil {
		spec.Logger, _ = newTestLogger(t)
	}
	m, err := mounts.Mount(context.Background(), spec)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() { unmount(t, m) })
	return m
}

func unmount(t *testing.T, m *mounts.Mounted) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Unmount(ctx); err != nil {
		t.Errorf("Unmount: %v", err)
	}
	if ok, err := mounts.IsMounted(m.Dst()); err != nil || ok {
		t.Errorf("after Unmount, %s in /proc/self/mountinfo: %v, %v", m.Dst(), ok, err)
	}
}

// s3Bucket starts a fake S3 endpoint with one bucket and returns a store
// for it.
func s3Bucket(t *testing.T, bucket string) mounts.Store {
	t.Helper()
	s := objstore.StartS3(t, objstore.Options{Buckets: []string{bucket}})
	s.Setenv(t)
	setCABundle(t)
	st, err := mounts.NewS3(context.Background(), bucket, mounts.S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

func readDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() {
			n += "/"
		}
		names = append(names, n)
	}
	return names
}

// A file renamed after its content went up (close, or fsync with the file
// still open) is in the bucket under its new name when rename(2)
// returns, not only once the kernel releases the last handle, which it
// does after close(2) returns.
func TestMountModeRenameOfAnUploadedFile(t *testing.T) {
	needFUSE(t)
	st := s3Bucket(t, "ren")
	dst := filepath.Join(t.TempDir(), "mnt")
	mount(t, mounts.MountSpec{Dst: dst, URL: "s3://ren/p", Mode: mounts.ModeMount, Store: st,
		ChunkSize: 1 << 20, MetadataTTL: 50 * time.Millisecond})
	f, err := os.Create(filepath.Join(dst, "open.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("written, synced, still open"); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	if err := os.Rename(filepath.Join(dst, "open.txt"), filepath.Join(dst, "moved.txt")); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if diff := cmp.Diff([]string{"p/moved.txt"}, storetest.Keys(t, st, "p/", false)); diff != "" {
		t.Errorf("bucket right after the rename (-want +got):\n%s", diff)
	}
	if got := storetest.Get(t, st, "p/moved.txt"); string(got) != "written, synced, still open" {
		t.Errorf("moved object holds %q", got)
	}
	// Written again through the open handle: it goes up under the new name.
	if _, err := f.WriteAt([]byte("W"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if diff := cmp.Diff([]string{"p/moved.txt"}, storetest.Keys(t, st, "p/", false)); diff != "" {
		t.Errorf("bucket after close (-want +got):\n%s", diff)
	}
	if got := storetest.Get(t, st, "p/moved.txt"); string(got) != "Written, synced, still open" {
		t.Errorf("after the write through the open handle the object holds %q", got)
	}
}

func TestMountMode(t *testing.T) {
	needFUSE(t)
	st := s3Bucket(t, "mnt")
	big := storetest.Random(5<<20 + 4321)
	storetest.Put(t, st, "p/a.txt", []byte("alpha"))
	storetest.Put(t, st, "p/dir/big.bin", big)
	storetest.Put(t, st, "p/empty", nil)
	storetest.Put(t, st, "outside", []byte("not in the mount"))
	log, logs := newTestLogger(t)
	dst := filepath.Join(t.TempDir(), "mnt")
	mount(t, mounts.MountSpec{Dst: dst, URL: "s3://mnt/p", Mode: mounts.ModeMount, Store: st,
		ChunkSize: 1 << 20, ReadAhead: 3, MetadataTTL: 50 * time.Millisecond, Logger: log})

	// Reads.
	if diff := cmp.Diff([]string{"a.txt", "dir/", "empty"}, readDir(t, dst)); diff != "" {
		t.Errorf("root listing (-want +got):\n%s", diff)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "a.txt")); err != nil || string(b) != "alpha" {
		t.Errorf("read a.txt = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "dir/big.bin")); err != nil || !bytes.Equal(b, big) {
		t.Errorf("read big.bin: %d bytes, %v; want the %d written", len(b), err, len(big))
	}
	f, err := os.Open(filepath.Join(dst, "dir/big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{4 << 20, 17, 3<<20 - 5, int64(len(big)) - 100} {
		buf := make([]byte, 100)
		if n, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf[:n], big[off:off+int64(n)]) {
			t.Errorf("ReadAt(%d) = %d, %v or wrong bytes", off, n, err)
		}
	}
	f.Close()
	if fi, err := os.Stat(filepath.Join(dst, "dir/big.bin")); err != nil || fi.Size() != int64(len(big)) {
		t.Errorf("stat big.bin = %v, %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of a missing file = %v", err)
	}

	// A new file, and a rewritten one, go up whole on close.
	if err := os.WriteFile(filepath.Join(dst, "new.txt"), []byte("fresh"), 0o644); err != nil {
		t.Fatalf("write new file: %v", err)
	}
	if got := storetest.Get(t, st, "p/new.txt"); string(got) != "fresh" {
		t.Errorf("after close the bucket holds %q; want %q", got, "fresh")
	}
	if err := os.WriteFile(filepath.Join(dst, "a.txt"), []byte("rewritten"), 0o644); err != nil {
		t.Fatalf("rewrite: %v", err)
	}
	if got := storetest.Get(t, st, "p/a.txt"); string(got) != "rewritten" {
		t.Errorf("after rewrite the bucket holds %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a.txt")); string(b) != "rewritten" {
		t.Errorf("rewritten file reads %q", b)
	}
	// Written in several writes and seeks within a new file: fine.
	nf, err := os.Create(filepath.Join(dst, "dir/seek.bin"))
	if err != nil {
		t.Fatal(err)
	}
	nf.WriteAt([]byte("world"), 6)
	nf.WriteAt([]byte("hello "), 0)
	if err := nf.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := storetest.Get(t, st, "p/dir/seek.bin"); string(got) != "hello world" {
		t.Errorf("bucket holds %q", got)
	}

	// Appending to, or writing inside, an existing object: ENOTSUP.
	_, err = os.OpenFile(filepath.Join(dst, "a.txt"), os.O_WRONLY|os.O_APPEND, 0)
	if errnoOf(err) != syscall.ENOTSUP {
		t.Errorf("open for append = %v; want ENOTSUP", err)
	}
	wf, err := os.OpenFile(filepath.Join(dst, "a.txt"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open for writing without O_TRUNC: %v", err)
	}
	if _, err := wf.WriteAt([]byte("X"), 3); errnoOf(err) != syscall.ENOTSUP {
		t.Errorf("write inside an object = %v; want ENOTSUP", err)
	}
	wf.Close()
	if got := storetest.Get(t, st, "p/a.txt"); string(got) != "rewritten" {
		t.Errorf("refused writes changed the object to %q", got)
	}
	var refusals int
	for _, l := range logs.Lines() {
		if strings.Contains(l, "ENOTSUP") && strings.Contains(l, filepath.Join(dst, "a.txt")) {
			refusals++
		}
	}
	if refusals != 2 {
		t.Errorf("%d log lines name a.txt and ENOTSUP; want 2", refusals)
	}
	// ftruncate to 0 first makes it a rewrite.
	tf, err := os.OpenFile(filepath.Join(dst, "a.txt"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tf.Truncate(0); err != nil {
		t.Fatalf("ftruncate 0: %v", err)
	}
	tf.WriteString("again")
	if err := tf.Close(); err != nil {
		t.Fatal(err)
	}
	if got := storetest.Get(t, st, "p/a.txt"); string(got) != "again" {
		t.Errorf("after ftruncate+write the bucket holds %q", got)
	}

	// Directories, renames, deletes.
	if err := os.Mkdir(filepath.Join(dst, "out"), 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dst, "out/r.txt"), []byte("r"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dst, "out")); errnoOf(err) != syscall.ENOTEMPTY {
		t.Errorf("rmdir of a full directory = %v; want ENOTEMPTY", err)
	}
	if err := os.Rename(filepath.Join(dst, "out/r.txt"), filepath.Join(dst, "moved.txt")); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if err := os.Remove(filepath.Join(dst, "out")); err != nil {
		t.Errorf("rmdir of an empty directory: %v", err)
	}
	if err := os.Remove(filepath.Join(dst, "new.txt")); err != nil {
		t.Fatalf("unlink: %v", err)
	}
	want := []string{"p/a.txt", "p/dir/big.bin", "p/dir/seek.bin", "p/empty", "p/moved.txt"}
	if diff := cmp.Diff(want, storetest.Keys(t, st, "p/", false)); diff != "" {
		t.Errorf("bucket after changes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a.txt", "dir/", "empty", "moved.txt"}, readDir(t, dst)); diff != "" {
		t.Errorf("listing after changes (-want +got):\n%s", diff)
	}
	// A change made in the bucket shows after MetadataTTL.
	storetest.Put(t, st, "p/dir/big.bin", []byte("small now"))
	waitFor(t, "the bucket's new content", 5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dst, "dir/big.bin"))
		return string(b) == "small now"
	})
}

func TestMountReadOnly(t *testing.T) {
	needFUSE(t)
	st := mounts.NewLocal(t.TempDir())
	storetest.Put(t, st, "a", []byte("a"))
	dst := filepath.Join(t.TempDir(), "ro")
	for _, mode := range []mounts.Mode{mounts.ModeMount, mounts.ModeMountCached} {
		t.Run(string(mode), func(t *testing.T) {
			m := mount(t, mounts.MountSpec{Dst: dst, URL: st.URL(), Mode: mode, Store: st, ReadOnly: true, CacheDir: t.TempDir()})
			if b, err := os.ReadFile(filepath.Join(dst, "a")); err != nil || string(b) != "a" {
				t.Errorf("read = %q, %v", b, err)
			}
			for what, err := range map[string]error{
				"create":  os.WriteFile(filepath.Join(dst, "b"), nil, 0o644),
				"rewrite": os.WriteFile(filepath.Join(dst, "a"), nil, 0o644),
				"unlink":  os.Remove(filepath.Join(dst, "a")),
				"mkdir":   os.Mkdir(filepath.Join(dst, "d"), 0o755),
			} {
				if errnoOf(err) != syscall.EROFS {
					t.Errorf("%s = %v; want EROFS", what, err)
				}
			}
			unmount(t, m)
		})
	}
}

func TestMountErrors(t *testing.T) {
	needFUSE(t)
	dst := filepath.Join(t.TempDir(), "m")
	_, err := mounts.Mount(context.Background(), mounts.MountSpec{Dst: dst, URL: "file://" + filepath.Join(t.TempDir(), "missing"), Mode: mounts.ModeMount})
	if !errors.Is(err, mounts.ErrBucketNotExist) {
		t.Errorf("Mount of a missing bucket = %v; want ErrBucketNotExist", err)
	}
	if ok, _ := mounts.IsMounted(dst); ok {
		t.Errorf("a failed Mount left %s mounted", dst)
	}
	st := s3Bucket(t, "errs")
	storetest.Put(t, st, "one/file", []byte("x"))
	_, err = mounts.Mount(context.Background(), mounts.MountSpec{Dst: dst, URL: "s3://errs/one/file", Store: st, Mode: mounts.ModeMount})
	if err == nil || !strings.Contains(err.Error(), "use mode COPY") {
		t.Errorf("MOUNT of one object = %v; want an error pointing to COPY", err)
	}
	_, err = mounts.Mount(context.Background(), mounts.MountSpec{Dst: dst, URL: "file://" + t.TempDir(), Mode: mounts.ModeMountCached})
	if err == nil || !strings.Contains(err.Error(), "cache directory") {
		t.Errorf("MOUNT_CACHED without a cache directory = %v", err)
	}
}

// Several readers of one bucket: two mounts (two nodes) and many
// concurrent readers; a file one writes, the other reads once closed.
func TestMountSeveralReaders(t *testing.T) {
	needFUSE(t)
	st := s3Bucket(t, "shared")
	data := storetest.Random(4<<20 + 99)
	storetest.Put(t, st, "data/shard", data)
	var dsts []string
	for i, mode := range []mounts.Mode{mounts.ModeMount, mounts.ModeMountCached} {
		dst := filepath.Join(t.TempDir(), "node"+string(rune('0'+i)))
		mount(t, mounts.MountSpec{Dst: dst, URL: "s3://shared", Mode: mode, Store: st, CacheDir: t.TempDir(),
			ChunkSize: 1 << 20, MetadataTTL: 50 * time.Millisecond, WriteBack: 10 * time.Millisecond})
		dsts = append(dsts, dst)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Go(func() {
			b, err := os.ReadFile(filepath.Join(dsts[i%2], "data/shard"))
			if err == nil && !bytes.Equal(b, data) {
				err = errors.New("read bytes that differ from the object")
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent reader: %v", err)
	}
	for i := range 2 {
		w, r := dsts[i], dsts[1-i]
		name := "from" + string(rune('0'+i))
		if err := os.WriteFile(filepath.Join(w, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		waitFor(t, name+" to show on the other mount", 10*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(r, name))
			return string(b) == name
		})
	}
}

// Each FUSE mode over each kind of store: read what is there, write a
// file, find it in the bucket.
func TestMountStores(t *testing.T) {
	needFUSE(t)
	s3 := objstore.StartS3(t, objstore.Options{Buckets: []string{"stores"}})
	s3.Setenv(t)
	gcs := objstore.StartGCS(t, objstore.Options{Buckets: []string{"stores"}})
	gcs.Setenv(t)
	setCABundle(t)
	s3st, err := mounts.NewS3(context.Background(), "stores", mounts.S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	gsst, err := mounts.NewGCS(context.Background(), "stores", mounts.GCSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gsst.Close() })
	data := storetest.Random(2<<20 + 1)
	for _, st := range []mounts.Store{s3st, gsst, mounts.NewLocal(t.TempDir())} {
		storetest.Put(t, st, "p/in.bin", data)
		for _, mode := range []mounts.Mode{mounts.ModeMount, mounts.ModeMountCached} {
			t.Run(strings.SplitN(st.URL(), ":", 2)[0]+"/"+string(mode), func(t *testing.T) {
				dst := filepath.Join(t.TempDir(), "mnt")
				spec := mounts.MountSpec{Dst: dst, URL: st.URL() + "/p", Mode: mode, Store: st,
					CacheDir: t.TempDir(), ChunkSize: 512 << 10}
				if strings.HasPrefix(st.URL(), "file:") {
					spec.Store = nil // the URL's whole path is the directory served
				}
				m := mount(t, spec)
				if b, err := os.ReadFile(filepath.Join(dst, "in.bin")); err != nil || !bytes.Equal(b, data) {
					t.Errorf("read %d bytes, %v; want the %d stored", len(b), err, len(data))
				}
				name := "out-" + string(mode)
				if err := os.WriteFile(filepath.Join(dst, name), data[:1000], 0o644); err != nil {
					t.Fatal(err)
				}
				if err := m.Flush(context.Background(), nil); err != nil {
					t.Fatal(err)
				}
				if got := storetest.Get(t, st, "p/"+name); !bytes.Equal(got, data[:1000]) {
					t.Errorf("bucket holds %d bytes; want the 1000 written", len(got))
				}
			})
		}
	}
}
