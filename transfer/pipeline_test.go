package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// BuildAndUpload leaves the store holding the manifest and every chunk,
// counts what it sent, and sends nothing the second time.
func TestBuildAndUpload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := randomTree(t, 5)
	store, err := NewDiskStore(t.TempDir())
	mustNo(t, err)
	var last Progress
	tree, id, st, err := BuildAndUpload(ctx, src, BuildOptions{}, store, UploadOptions{Progress: func(p Progress) {
		if p.Op == "upload" {
			last = p
		}
	}})
	mustNo(t, err)
	refs := tree.Manifest.Chunks()
	var total int64
	for _, r := range refs {
		total += r.Size
	}
	ids := []ChunkID{id}
	for _, r := range refs {
		ids = append(ids, r.ID)
	}
	missing, err := store.Missing(ctx, ids)
	mustNo(t, err)
	if len(missing) != 0 {
		t.Fatalf("the store misses %d of the manifest and its chunks", len(missing))
	}
	if st.Chunks != len(refs) || st.Bytes != total {
		t.Errorf("stats = %+v, want %d chunks, %d bytes: all of them", st, len(refs), total)
	}
	if !last.Done || last.Bytes != total {
		t.Errorf("last upload progress = %+v, want done with %d bytes", last, total)
	}
	if m, err := FetchManifest(ctx, id, store); err != nil || len(m.Entries) != len(tree.Manifest.Entries) {
		t.Errorf("stored manifest: %v", err)
	}
	_, _, st, err = BuildAndUpload(ctx, src, BuildOptions{}, store, UploadOptions{})
	mustNo(t, err)
	if st.Chunks != 0 || st.Bytes != 0 {
		t.Errorf("second upload: %+v, want nothing sent", st)
	}
}

// flakyStore refuses the first batch put in it (an early one): the
// closing Upload must still send everything.
type flakyStore struct {
	*memStore
	fails atomic.Int32
}

func (s *flakyStore) PutMany(ctx context.Context, refs []ChunkRef, open func(ChunkID) (io.ReadCloser, error)) error {
	if s.fails.Add(-1) >= 0 {
		return errors.New("refused")
	}
	for _, r := range refs {
		rc, err := open(r.ID)
		if err != nil {
			return err
		}
		err = s.Put(ctx, r.ID, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func TestBuildAndUploadRecoversFromEarlyFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Enough files to fill an early batch: fewer go with the manifest.
	src := t.TempDir()
	for i := range earlyBatchChunks + 10 {
		mustNo(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), fmt.Appendf(nil, "file %d\n", i), 0o644))
	}
	store := &flakyStore{memStore: newMemStore()}
	store.fails.Store(1)
	tree, id, _, err := BuildAndUpload(ctx, src, BuildOptions{}, store, UploadOptions{})
	mustNo(t, err)
	ids := []ChunkID{id}
	for _, r := range tree.Manifest.Chunks() {
		ids = append(ids, r.ID)
	}
	missing, err := store.Missing(ctx, ids)
	mustNo(t, err)
	if len(missing) != 0 {
		t.Fatalf("after refused early batches the store misses %d chunks", len(missing))
	}
	if store.fails.Load() >= 0 {
		t.Fatal("no batch was refused: the test tried nothing")
	}
}

// randomTree writes a random tree (some files spanning several chunks)
// and returns its directory.
func randomTree(t *testing.T, seed uint64) string {
	src := filepath.Join(t.TempDir(), "src")
	mustNo(t, os.Mkdir(src, 0o755))
	g := &treeGen{rng: rand.New(rand.NewPCG(seed, 7)), dir: src, big: true}
	g.fill(t, ".", 0)
	g.finish(t)
	return src
}

// TestBuildAndUploadIntoLocalStore: into a DiskStore on this machine the
// chunks go straight from the read that hashed them, in packs another
// process sharing the directory (the coordinator) reads; and a client
// opens the store only when the id its server reported matches.
func TestBuildAndUploadIntoLocalStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := randomTree(t, 7)
	dir := t.TempDir()
	server, err := NewDiskStore(dir)
	mustNo(t, err)
	if _, err := OpenLocalStore(dir, "another store's id"); err == nil {
		t.Fatal("OpenLocalStore with a wrong id: no error")
	}
	if _, err := OpenLocalStore("relative/dir", server.ID()); err == nil {
		t.Fatal("OpenLocalStore of a relative path: no error")
	}
	client, err := OpenLocalStore(dir, server.ID())
	mustNo(t, err)
	tree, id, st, err := BuildAndUpload(ctx, src, BuildOptions{}, client, UploadOptions{})
	mustNo(t, err)
	refs := tree.Manifest.Chunks()
	if st.Chunks != len(refs) {
		t.Errorf("stats %+v, want %d chunks stored", st, len(refs))
	}
	m, err := FetchManifest(ctx, id, server)
	mustNo(t, err)
	for _, r := range m.Chunks() {
		if data := readChunk(t, server, r.ID); HashChunk(data) != r.ID || int64(len(data)) != r.Size {
			t.Fatalf("chunk %s: the store holds other bytes", r.ID)
		}
	}
}
