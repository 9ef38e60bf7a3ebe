package coordinator

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
	"github.com/sky-coord/sky-coord/transfer"
)

// The collector keeps the chunks of trees a job names and packs younger
// than chunkGCAge, and removes older packs no job needs.
func TestCollectChunks(t *testing.T) {
	ctx := context.Background()
	s, err := New(Config{DataDir: t.TempDir(), Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.closeRaft() }()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "used.txt"), []byte("a job's workdir"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree, err := transfer.BuildManifest(ctx, src, transfer.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mid, _, err := transfer.Upload(ctx, &tree.Manifest, tree, s.chunks, transfer.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job := api.Job{Name: "j", Blobs: []api.BlobRef{{Digest: mid.String(), Dest: "~/sky_workdir"}}}
	if _, err := s.apply(fsm.ClusterLaunchType, fsm.ClusterLaunch{Cluster: api.Cluster{Name: "c"}, Job: job, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	put := func(data string) transfer.ChunkID {
		id := transfer.HashChunk([]byte(data))
		if err := s.chunks.Put(ctx, id, bytes.NewReader([]byte(data))); err != nil {
			t.Fatal(err)
		}
		return id
	}
	old, young := put("an old version nobody needs"), put("uploaded a moment ago")
	// Age every pack but young's past chunkGCAge.
	packs, _ := filepath.Glob(filepath.Join(s.chunks.Dir(), "packs", "*.pack"))
	past := time.Now().Add(-2 * chunkGCAge)
	for _, p := range packs {
		if filepath.Base(p)[:16] != young.String()[:16] {
			if err := os.Chtimes(p, past, past); err != nil {
				t.Fatal(err)
			}
		}
	}
	n, err := s.collectChunks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	used := transfer.HashChunk([]byte("a job's workdir"))
	missing, err := s.chunks.Missing(ctx, []transfer.ChunkID{used, mid, old, young})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || len(missing) != 1 || missing[0] != old {
		t.Errorf("collected %d chunks, now missing %v; want only the old unused one (%s) gone", n, missing, old)
	}
}
