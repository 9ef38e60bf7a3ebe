package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func readChunk(t *testing.T, s Source, id ChunkID) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), id)
	mustNo(t, err)
	defer rc.Close()
	data, err := io.ReadAll(rc)
	mustNo(t, err)
	return data
}

// wantChunk fails the test unless s holds id with the bytes want.
func wantChunk(t *testing.T, s Source, id ChunkID, want []byte, what string) {
	t.Helper()
	if got := readChunk(t, s, id); !bytes.Equal(got, want) {
		t.Fatal(what)
	}
}

// putString stores data as a chunk of its own and returns its id.
func putString(t *testing.T, s *DiskStore, data string) ChunkID {
	t.Helper()
	id := HashChunk([]byte(data))
	mustNo(t, s.Put(context.Background(), id, strings.NewReader(data)))
	return id
}

// sharedStores opens two stores on one directory, as two agents on one
// machine do.
func sharedStores(t *testing.T) (*DiskStore, *DiskStore) {
	dir := t.TempDir()
	s1, err := NewDiskStore(dir)
	mustNo(t, err)
	s2, err := NewDiskStore(dir)
	mustNo(t, err)
	return s1, s2
}

func TestDiskStorePutGetReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewDiskStore(dir)
	mustNo(t, err)
	a, b := []byte("alpha"), randomBytes(1, 3<<20)
	ida, idb := HashChunk(a), HashChunk(b)
	mustNo(t, s.Put(ctx, ida, bytes.NewReader(a)))
	batch := s.newBatch()
	mustNo(t, batch.Put(ctx, idb, bytes.NewReader(b)))
	mustNo(t, batch.Put(ctx, ida, bytes.NewReader(a))) // already there: skipped
	mustNo(t, batch.Commit())
	missing, err := s.Missing(ctx, []ChunkID{ida, HashChunk([]byte("nope")), idb})
	mustNo(t, err)
	if len(missing) != 1 || missing[0] != HashChunk([]byte("nope")) {
		t.Fatalf("Missing = %v", missing)
	}
	// A fresh store over the same directory finds everything again.
	s2, err := NewDiskStore(dir)
	mustNo(t, err)
	wantChunk(t, s2, idb, b, "chunk b differs after reopening")
	wantChunk(t, s2, ida, a, "chunk a differs after reopening")
	if _, err := s2.Get(ctx, HashChunk([]byte("nope"))); !errors.Is(err, ErrChunkNotFound) {
		t.Fatalf("Get of a missing chunk: %v, want ErrChunkNotFound", err)
	}
}

func TestDiskStoreRejectsCorruptChunks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewDiskStore(dir)
	mustNo(t, err)
	good, bad := []byte("good"), []byte("bad")
	err = s.Put(ctx, HashChunk(good), bytes.NewReader(bad))
	if !errors.Is(err, ErrChunkCorrupt) {
		t.Fatalf("Put of corrupt data: %v, want ErrChunkCorrupt", err)
	}
	if m, _ := s.Missing(ctx, []ChunkID{HashChunk(good)}); len(m) != 1 {
		t.Fatal("a corrupt chunk became visible")
	}
	// In a batch, a corrupt chunk is left out and the others kept.
	batch := s.newBatch()
	one, two := []byte("one"), []byte("two")
	mustNo(t, batch.Put(ctx, HashChunk(one), bytes.NewReader(one)))
	if err := batch.Put(ctx, HashChunk(good), bytes.NewReader(bad)); !errors.Is(err, ErrChunkCorrupt) {
		t.Fatalf("batch Put of corrupt data: %v", err)
	}
	mustNo(t, batch.Put(ctx, HashChunk(two), bytes.NewReader(two)))
	mustNo(t, batch.Commit())
	if got := readChunk(t, s, HashChunk(two)); string(got) != "two" {
		t.Fatalf("chunk after a corrupt one reads %q", got)
	}
	entries, err := os.ReadDir(filepath.Join(dir, packsDir))
	mustNo(t, err)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), packSuffix) {
			t.Fatalf("temporary file %s left behind", e.Name())
		}
	}
	// A damaged pack is dropped when the store is opened.
	p := filepath.Join(dir, packsDir, entries[0].Name())
	mustNo(t, os.WriteFile(p, []byte("garbage"), 0o644))
	if _, err := NewDiskStore(dir); err != nil {
		t.Fatalf("reopen with a damaged pack: %v", err)
	}
}

func TestDiskStoreGetWaitsForExpectedChunks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := NewDiskStore(t.TempDir())
	mustNo(t, err)
	data := []byte("on its way")
	id := HashChunk(data)
	other := HashChunk([]byte("never comes"))
	release := s.Expect([]ChunkID{id, other})
	got := make(chan error, 2)
	go func() {
		rc, err := s.Get(ctx, id)
		if err == nil {
			rc.Close()
		}
		got <- err
	}()
	go func() {
		_, err := s.Get(ctx, other)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Get returned before the chunk arrived: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	mustNo(t, s.Put(ctx, id, bytes.NewReader(data)))
	if err := <-got; err != nil {
		t.Fatalf("Get of the arrived chunk: %v", err)
	}
	release()
	if err := <-got; !errors.Is(err, ErrChunkNotFound) {
		t.Fatalf("Get of a chunk that never came: %v, want ErrChunkNotFound", err)
	}
}

func TestDiskStoreRetain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := NewDiskStore(t.TempDir())
	mustNo(t, err)
	keep, drop := []byte("keep"), []byte("drop")
	mustNo(t, s.Put(ctx, HashChunk(keep), bytes.NewReader(keep)))
	mustNo(t, s.Put(ctx, HashChunk(drop), bytes.NewReader(drop)))
	n, err := s.Retain(ctx, func(id ChunkID) bool { return id == HashChunk(keep) })
	mustNo(t, err)
	if n != 1 {
		t.Fatalf("Retain removed %d chunks, want 1", n)
	}
	missing, _ := s.Missing(ctx, []ChunkID{HashChunk(keep), HashChunk(drop)})
	if len(missing) != 1 || missing[0] != HashChunk(drop) {
		t.Fatalf("after Retain, missing = %v", missing)
	}
}

// Two stores over one directory (two agents on one machine) see each
// other's chunks: a chunk one of them stored is not missing for the other.
func TestDiskStoreSharedDirectory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s1, s2 := sharedStores(t)
	a, b := []byte("written by the first"), []byte("written by the second")
	ida, idb := HashChunk(a), HashChunk(b)
	mustNo(t, s1.Put(ctx, ida, bytes.NewReader(a)))
	missing, err := s2.Missing(ctx, []ChunkID{ida, idb})
	mustNo(t, err)
	if len(missing) != 1 || missing[0] != idb {
		t.Fatalf("second store: Missing = %v, want only %s", missing, idb)
	}
	mustNo(t, s2.Put(ctx, idb, bytes.NewReader(b)))
	wantChunk(t, s1, idb, b, "first store reads the second's chunk wrong")
	wantChunk(t, s2, ida, a, "second store reads the first's chunk wrong")
	if _, err := s1.Get(ctx, HashChunk([]byte("nope"))); !errors.Is(err, ErrChunkNotFound) {
		t.Fatalf("Get of a chunk neither has: %v, want ErrChunkNotFound", err)
	}
}

// A store whose pack another process removed, and which that process
// then stored again, still reads the chunk (from the new pack).
func TestDiskStoreSharedPackRemovedAndStoredAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s1, s2 := sharedStores(t)
	data := []byte("collected, then uploaded again")
	id := HashChunk(data)
	mustNo(t, s1.Put(ctx, id, bytes.NewReader(data)))
	wantChunk(t, s2, id, data, "second store reads the chunk wrong")
	n, err := s1.Retain(ctx, func(ChunkID) bool { return false })
	mustNo(t, err)
	if n != 1 {
		t.Fatalf("Retain removed %d chunks, want 1", n)
	}
	mustNo(t, s1.Put(ctx, id, bytes.NewReader(data)))
	wantChunk(t, s2, id, data, "second store does not find the chunk stored again")
}

// A store of many packs writes their indexes into one cache file at open;
// the next open reads that, passes over a pack removed since, reads a pack
// added since, and ignores a damaged cache.
func TestDiskStorePackCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewDiskStore(dir)
	mustNo(t, err)
	var ids []ChunkID
	for i := range packCacheAfter + 4 {
		data := []byte(fmt.Sprint("chunk ", i))
		ids = append(ids, HashChunk(data))
		mustNo(t, s.Put(ctx, ids[i], bytes.NewReader(data))) // a pack each
	}
	cache := filepath.Join(dir, packCacheFile)
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Fatalf("a cache before any open read the packs: %v", err)
	}
	_, err = NewDiskStore(dir)
	mustNo(t, err)
	if got := len(loadPackCache(dir)); got != len(ids) {
		t.Fatalf("cache lists %d packs, want %d", got, len(ids))
	}
	// Remove the pack of ids[0]; add one.
	packs, err := os.ReadDir(filepath.Join(dir, packsDir))
	mustNo(t, err)
	for _, p := range packs {
		if strings.HasPrefix(p.Name(), ids[0].String()[:16]) {
			mustNo(t, os.Remove(filepath.Join(dir, packsDir, p.Name())))
		}
	}
	added := []byte("added after the cache")
	mustNo(t, s.Put(ctx, HashChunk(added), bytes.NewReader(added)))
	check := func(what string) {
		t.Helper()
		s2, err := NewDiskStore(dir)
		mustNo(t, err)
		missing, err := s2.Missing(ctx, append(slices.Clone(ids), HashChunk(added)))
		mustNo(t, err)
		if len(missing) != 1 || missing[0] != ids[0] {
			t.Fatalf("%s: missing %v, want only the removed pack's chunk %s", what, missing, ids[0])
		}
		wantChunk(t, s2, ids[3], []byte("chunk 3"), what+": chunk 3 differs")
		wantChunk(t, s2, HashChunk(added), added, what+": the added chunk differs")
	}
	check("with the cache")
	data, err := os.ReadFile(cache)
	mustNo(t, err)
	data[len(data)/2] ^= 0xff
	mustNo(t, os.WriteFile(cache, data, 0o644))
	if loadPackCache(dir) != nil {
		t.Fatal("a damaged cache was read")
	}
	check("with a damaged cache")
}

// A store sharing its directory learns of the other's packs from the pack
// log, not by listing the directory: a pack put there unlogged is found
// only once the log is gone (and the store lists the directory again). A
// line still being written is left for later.
func TestDiskStorePackLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s1, s2 := sharedStores(t)
	put := func(s *DiskStore, data string) ChunkID { return putString(t, s, data) }
	missing := func(s *DiskStore, id ChunkID) bool {
		m, err := s.Missing(ctx, []ChunkID{id})
		mustNo(t, err)
		return len(m) == 1
	}
	logged := put(s1, "logged")
	if missing(s2, logged) {
		t.Fatal("the second store does not find the first's logged pack")
	}
	// A pack that appears without a log line: copy the last one under a
	// name of its own, as a writer that crashed before logging leaves it.
	packs := filepath.Join(s1.dir, packsDir)
	unlogged := put(s1, "unlogged")
	name := s1.index[unlogged].pack
	data, err := os.ReadFile(filepath.Join(packs, name))
	mustNo(t, err)
	mustNo(t, os.Remove(filepath.Join(packs, name)))
	log := filepath.Join(s1.dir, packLogFile)
	before, err := os.ReadFile(log)
	mustNo(t, err)
	mustNo(t, os.WriteFile(log, before[:len(before)-len(name)-1], 0o644))
	mustNo(t, os.WriteFile(filepath.Join(packs, "0000-unlogged"+packSuffix), data, 0o644))
	if !missing(s2, unlogged) {
		t.Fatal("the second store listed the directory though the log serves")
	}
	// Half a line, then the rest.
	third := put(s1, "third")
	whole, err := os.ReadFile(log)
	mustNo(t, err)
	mustNo(t, os.WriteFile(log, whole[:len(whole)-5], 0o644))
	if !missing(s2, third) {
		t.Fatal("the second store read half a line of the log")
	}
	mustNo(t, os.WriteFile(log, whole, 0o644))
	if missing(s2, third) {
		t.Fatal("the second store did not read the line once whole")
	}
	// Without a log, the directory is listed.
	mustNo(t, os.Remove(log))
	if missing(s2, unlogged) {
		t.Fatal("without a log, the second store did not list the directory")
	}
}

// A chunk Missing reports present is kept by RetainSince as long as one
// just written: a client that was told it is there names it in a manifest
// without sending it. Another process sharing the directory learns it
// from the pack's modification time.
func TestDiskStoreKeepsWhatMissingConfirmed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, s2 := sharedStores(t) // s2 stands for another process
	asked, other, unasked := putString(t, s, "confirmed to a client"), putString(t, s, "confirmed to another process's client"), putString(t, s, "nobody asked")
	packs, err := filepath.Glob(filepath.Join(s.Dir(), packsDir, "*"+packSuffix))
	mustNo(t, err)
	past := time.Now().Add(-2 * time.Hour)
	for _, p := range packs {
		mustNo(t, os.Chtimes(p, past, past))
	}
	// This process's client, then another process's.
	if missing, err := s.Missing(ctx, []ChunkID{asked}); err != nil || len(missing) != 0 {
		t.Fatalf("Missing = %v, %v", missing, err)
	}
	if missing, err := s2.Missing(ctx, []ChunkID{other}); err != nil || len(missing) != 0 {
		t.Fatalf("Missing in the other process = %v, %v", missing, err)
	}
	n, err := s.RetainSince(ctx, func(ChunkID) bool { return false }, time.Now().Add(-time.Hour))
	mustNo(t, err)
	missing, err := s.Missing(ctx, []ChunkID{asked, other, unasked})
	mustNo(t, err)
	if n != 1 || len(missing) != 1 || missing[0] != unasked {
		t.Errorf("removed %d chunks, now missing %v; want only the one nobody asked about (%s) gone", n, missing, unasked)
	}
	// Retain without an age keeps nothing for having been asked about.
	n, err = s.Retain(ctx, func(ChunkID) bool { return false })
	mustNo(t, err)
	if n != 2 {
		t.Errorf("Retain removed %d chunks, want the 2 left", n)
	}
}

// Missing moves the time of a pack only when it is older than
// refreshEvery: a pack written moments ago (by another process sharing the
// directory, as every node's re-sync finds the head's) keeps its time.
func TestDiskStoreMissingTouchesOnlyOldPacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		age     time.Duration
		touched bool
	}{{refreshEvery / 2, false}, {2 * refreshEvery, true}} {
		w, s := sharedStores(t)
		id := putString(t, w, fmt.Sprintf("a pack %s old", c.age))
		packs, err := filepath.Glob(filepath.Join(w.Dir(), packsDir, "*"+packSuffix))
		mustNo(t, err)
		then := time.Now().Add(-c.age).Truncate(time.Second)
		mustNo(t, os.Chtimes(packs[0], then, then))
		if missing, err := s.Missing(ctx, []ChunkID{id}); err != nil || len(missing) != 0 {
			t.Fatalf("Missing = %v, %v", missing, err)
		}
		fi, err := os.Stat(packs[0])
		mustNo(t, err)
		if touched := !fi.ModTime().Equal(then); touched != c.touched {
			t.Errorf("a pack %s old: touched = %v, want %v", c.age, touched, c.touched)
		}
	}
}

// A copy takes a buffer from the pool only when it is large: a small one
// would pay for the pool's fresh megabyte when the pool is empty.
func TestCopyBufferPoolsOnlyLargeCopies(t *testing.T) {
	var b copyBuffer
	if got := b.get(24); len(got) < 24 || len(got) > smallCopy || b.pooled != nil {
		t.Errorf("a 24-byte copy got a buffer of %d bytes, pooled %v; want a small one of its own", len(got), b.pooled != nil)
	}
	if got := b.get(smallCopy + 1); len(got) != copyBufSize || b.pooled == nil {
		t.Errorf("a copy of %d bytes got a buffer of %d bytes, pooled %v; want the pool's", smallCopy+1, len(got), b.pooled != nil)
	}
	if got := b.get(24); len(got) != copyBufSize {
		t.Errorf("after a large copy a small one got %d bytes; want the pooled buffer it already holds", len(got))
	}
	var u copyBuffer
	if got := u.get(-1); len(got) != copyBufSize {
		t.Errorf("a copy of unknown length got %d bytes; want the pool's %d", len(got), copyBufSize)
	}
	u.release()
	b.release()
	if b.pooled != nil {
		t.Error("release kept the pooled buffer")
	}
}

// A chunk is copied out of its pack at its own offset, whatever the
// destination's position and filesystem: in the kernel where it can be,
// by reading where the kernel refuses (another filesystem).
func TestCopyChunkOutOfAPack(t *testing.T) {
	s, err := NewDiskStore(t.TempDir())
	mustNo(t, err)
	ctx := context.Background()
	chunks := []string{strings.Repeat("a", 5000), strings.Repeat("bc", 70_000), "last"}
	b := s.newBatch()
	ids := make([]ChunkID, len(chunks))
	for i, c := range chunks {
		ids[i] = HashChunk([]byte(c))
		mustNo(t, b.Put(ctx, ids[i], strings.NewReader(c)))
	}
	mustNo(t, b.Commit())
	dirs := []string{t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "sky-coord-test-")
		mustNo(t, err)
		t.Cleanup(func() { os.RemoveAll(d) })
		dirs = append(dirs, d)
	}
	for _, dir := range dirs {
		dst, err := openFile(filepath.Join(dir, "out"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		mustNo(t, err)
		_, err = dst.WriteString("prefix:")
		mustNo(t, err)
		want := "prefix:"
		var buf copyBuffer
		defer buf.release()
		for i := len(ids) - 1; i >= 0; i-- { // not in pack order
			rc, err := s.Get(ctx, ids[i])
			mustNo(t, err)
			n, err := copyChunkTo(dst, rc, &buf)
			rc.Close()
			mustNo(t, err)
			if n != int64(len(chunks[i])) {
				t.Errorf("%s: chunk %d: copied %d bytes, want %d", dir, i, n, len(chunks[i]))
			}
			want += chunks[i]
		}
		mustNo(t, dst.Close())
		got, err := os.ReadFile(filepath.Join(dir, "out"))
		mustNo(t, err)
		if string(got) != want {
			t.Errorf("%s: the copies hold %d bytes that differ from the chunks (%d bytes)", dir, len(got), len(want))
		}
	}
}
