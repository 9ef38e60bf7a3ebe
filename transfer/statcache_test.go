package transfer

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStatCacheSkipsUnchangedFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	for _, name := range []string{"a", "b", "c"} {
		p := filepath.Join(dir, name)
		mustNo(t, os.WriteFile(p, []byte("content of "+name), 0o644))
		mustNo(t, os.Chtimes(p, old, old))
	}
	fresh := filepath.Join(dir, "fresh")
	mustNo(t, os.WriteFile(fresh, []byte("just written"), 0o644))
	cacheFile := filepath.Join(t.TempDir(), "cache")

	cache := LoadStatCache(cacheFile) // missing: empty
	first, err := BuildManifest(ctx, dir, BuildOptions{Cache: cache})
	mustNo(t, err)
	if first.Stats.Read != 4 {
		t.Fatalf("first build read %d files, want 4", first.Stats.Read)
	}
	mustNo(t, cache.Save(cacheFile))

	cache = LoadStatCache(cacheFile)
	second, err := BuildManifest(ctx, dir, BuildOptions{Cache: cache})
	mustNo(t, err)
	// The file written within two seconds is read again; the rest is not.
	if second.Stats.Read != 1 {
		t.Fatalf("second build read %d files, want only the fresh one", second.Stats.Read)
	}
	if diff := cmp.Diff(first.Manifest, second.Manifest); diff != "" {
		t.Fatalf("manifest differs with the cache (-without +with):\n%s", diff)
	}

	// Same size, same mtime, other content: ctime tells.
	p := filepath.Join(dir, "b")
	mustNo(t, os.WriteFile(p, []byte("CONTENT OF b"), 0o644))
	mustNo(t, os.Chtimes(p, old, old))
	third, err := BuildManifest(ctx, dir, BuildOptions{Cache: cache})
	mustNo(t, err)
	if third.Stats.Read != 2 {
		t.Fatalf("third build read %d files, want the changed and the fresh one", third.Stats.Read)
	}
	if sameChunks(entryByPath(t, &second.Manifest, "b").Chunks, entryByPath(t, &third.Manifest, "b").Chunks) {
		t.Fatal("a changed file kept its old chunks")
	}

	// A corrupt cache file is an empty cache.
	mustNo(t, os.WriteFile(cacheFile, []byte(statCacheMagic+"\xff\xff"), 0o600))
	if c := LoadStatCache(cacheFile); len(c.old) != 0 {
		t.Fatal("a corrupt cache file loaded entries")
	}
}

func entryByPath(t *testing.T, m *Manifest, path string) *Entry {
	t.Helper()
	for i := range m.Entries {
		if m.Entries[i].Path == path {
			return &m.Entries[i]
		}
	}
	t.Fatalf("no entry %q", path)
	return nil
}

func TestProgressReports(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for i := range 50 {
		mustNo(t, osWriteFile(dir, string(rune('a'+i%26))+string(rune('a'+i/26)), string(randomBytes(uint64(i), 5000))))
	}
	var mu sync.Mutex
	last := map[string]Progress{}
	calls := map[string]int{}
	busy := false
	fn := func(p Progress) {
		mu.Lock()
		if busy {
			t.Error("progress calls overlap")
		}
		busy = true
		calls[p.Op]++
		if prev, ok := last[p.Op]; ok && prev.Done {
			t.Errorf("%s: a call after the one marked Done", p.Op)
		}
		last[p.Op] = p
		busy = false
		mu.Unlock()
	}
	tree, err := BuildManifest(ctx, dir, BuildOptions{Progress: fn})
	mustNo(t, err)
	store, err := NewDiskStore(t.TempDir())
	mustNo(t, err)
	_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{Progress: fn})
	mustNo(t, err)
	_, err = Apply(ctx, &tree.Manifest, store, filepath.Join(t.TempDir(), "wd"), ApplyOptions{Progress: fn})
	mustNo(t, err)
	for _, op := range []string{"scan", "upload", "apply"} {
		p := last[op]
		if !p.Done || p.Bytes != p.TotalBytes || p.Files != p.TotalFiles || p.TotalFiles != 50 || p.TotalBytes != 50*5000 {
			t.Errorf("%s: last progress %+v, want done with 50 files of 5000 bytes", op, p)
		}
	}
}
