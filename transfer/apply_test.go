package transfer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApplyNeverWritesThroughLinks puts links where the source has
// directories, in a destination synced before, pointing at a victim
// directory outside; nothing may be written or deleted there.
func TestApplyNeverWritesThroughLinks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, victim := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "victim")
	for _, d := range []string{src, victim, filepath.Join(src, "a"), filepath.Join(src, "gone")} {
		mustNo(t, os.MkdirAll(d, 0o755))
	}
	mustNo(t, osWriteFile(filepath.Join(src, "a"), "x", "synced"))
	mustNo(t, osWriteFile(filepath.Join(src, "gone"), "f", "synced"))
	mustNo(t, osWriteFile(victim, "x", "victim's"))
	mustNo(t, osWriteFile(victim, "f", "synced")) // same as what sky-coord wrote at gone/f
	store := newMemStore()
	sync := func() error {
		tree, err := BuildManifest(ctx, src, BuildOptions{})
		mustNo(t, err)
		_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
		mustNo(t, err)
		_, err = Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
		return err
	}
	mustNo(t, sync())
	// The job swaps both directories for links to the victim.
	for _, d := range []string{"a", "gone"} {
		mustNo(t, os.RemoveAll(filepath.Join(dst, d)))
		mustNo(t, os.Symlink(victim, filepath.Join(dst, d)))
	}
	mustNo(t, osWriteFile(filepath.Join(src, "a"), "x", "new content"))
	mustNo(t, os.RemoveAll(filepath.Join(src, "gone")))
	mustNo(t, sync())
	for name, want := range map[string]string{"x": "victim's", "f": "synced"} {
		data, err := os.ReadFile(filepath.Join(victim, name))
		mustNo(t, err)
		if string(data) != want {
			t.Fatalf("victim/%s = %q: written through a link", name, data)
		}
	}
	fi, err := os.Lstat(filepath.Join(dst, "a"))
	mustNo(t, err)
	if !fi.IsDir() {
		t.Fatal("dst/a is still a link; the source has a directory there")
	}
	data, err := os.ReadFile(filepath.Join(dst, "a", "x"))
	mustNo(t, err)
	if string(data) != "new content" {
		t.Fatalf("dst/a/x = %q", data)
	}
}

// TestApplySkipUnchanged shows the trade SkipUnchanged makes.
func TestApplySkipUnchanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	mustNo(t, os.MkdirAll(src, 0o755))
	mustNo(t, osWriteFile(src, "same.py", "v1"))
	mustNo(t, osWriteFile(src, "edit.py", "v1"))
	store := newMemStore()
	sync := func(opts ApplyOptions) ApplyStats {
		tree, err := BuildManifest(ctx, src, BuildOptions{})
		mustNo(t, err)
		_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
		mustNo(t, err)
		st, err := Apply(ctx, &tree.Manifest, store, dst, opts)
		mustNo(t, err)
		return st
	}
	sync(ApplyOptions{})
	mustNo(t, osWriteFile(dst, "same.py", "job's edit"))
	mustNo(t, osWriteFile(src, "edit.py", "v2"))
	st := sync(ApplyOptions{SkipUnchanged: true})
	if st.Written != 1 {
		t.Fatalf("stats %+v, want only edit.py written", st)
	}
	data, _ := os.ReadFile(filepath.Join(dst, "same.py"))
	if string(data) != "job's edit" {
		t.Fatalf("same.py = %q: SkipUnchanged should not have looked at it", data)
	}
	st = sync(ApplyOptions{})
	data, _ = os.ReadFile(filepath.Join(dst, "same.py"))
	if string(data) != "v1" || st.Written != 1 {
		t.Fatalf("same.py = %q (stats %+v): a full apply puts the source's version back, as rsync does", data, st)
	}
}

func TestApplyCleansStaleStaging(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	mustNo(t, os.MkdirAll(src, 0o755))
	mustNo(t, osWriteFile(src, "a", "a"))
	store := newMemStore()
	tree, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
	mustNo(t, err)
	_, err = Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
	mustNo(t, err)
	stale := filepath.Join(dst, stagePrefix+"0123456789ab")
	mustNo(t, os.MkdirAll(filepath.Join(stale, "x"), 0o755))
	mustNo(t, osWriteFile(src, "b", "b"))
	tree, err = BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
	mustNo(t, err)
	_, err = Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
	mustNo(t, err)
	entries, _ := os.ReadDir(dst)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".sky-sync") {
			t.Fatalf("%s left in the workdir", e.Name())
		}
	}
	if _, err := os.Stat(DefaultStateFile(dst)); err != nil {
		t.Fatalf("no state file beside the workdir: %v", err)
	}
}

func TestApplyFailsCleanlyWhenChunksAreMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	mustNo(t, os.MkdirAll(src, 0o755))
	mustNo(t, osWriteFile(src, "a", "old"))
	store := newMemStore()
	tree, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
	mustNo(t, err)
	_, err = Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
	mustNo(t, err)
	before := treeSnapshot(t, dst, nil)
	mustNo(t, osWriteFile(src, "a", "new"))
	mustNo(t, osWriteFile(src, "b", "new file"))
	mustNo(t, os.Remove(filepath.Join(src, "a")))
	tree, err = BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	// Not uploaded: the store lacks b's chunk.
	if _, err := Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{}); err == nil {
		t.Fatal("Apply without the chunks succeeded")
	}
	after := treeSnapshot(t, dst, nil)
	if len(before) != len(after) || after["a"].Sum != before["a"].Sum {
		t.Fatal("a failed Apply changed the destination")
	}
}
