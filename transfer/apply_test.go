package transfer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
		tree := uploadTree(t, src, store)
		_, err := Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
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
		tree := uploadTree(t, src, store)
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
	tree := uploadTree(t, src, store)
	_, err := Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
	mustNo(t, err)
	stale := filepath.Join(dst, stagePrefix+"0123456789ab")
	mustNo(t, os.MkdirAll(filepath.Join(stale, "x"), 0o755))
	mustNo(t, osWriteFile(src, "b", "b"))
	tree = uploadTree(t, src, store)
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

// syncedOnce writes a source holding one file and applies it to a new
// destination through a store in memory.
func syncedOnce(t *testing.T, name, data string) (src, dst string, store *memStore) {
	t.Helper()
	tmp := t.TempDir()
	src, dst = filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	mustNo(t, os.MkdirAll(src, 0o755))
	mustNo(t, osWriteFile(src, name, data))
	store = newMemStore()
	tree := uploadTree(t, src, store)
	_, err := Apply(context.Background(), &tree.Manifest, store, dst, ApplyOptions{})
	mustNo(t, err)
	return src, dst, store
}

func TestApplyFailsCleanlyWhenChunksAreMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, dst, store := syncedOnce(t, "a", "old")
	before := treeSnapshot(t, dst, nil)
	mustNo(t, osWriteFile(src, "a", "new"))
	mustNo(t, osWriteFile(src, "b", "new file"))
	mustNo(t, os.Remove(filepath.Join(src, "a")))
	tree, err := BuildManifest(ctx, src, BuildOptions{})
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

// New directories in an existing destination are built whole in the
// staging area and renamed into place: a failure leaves none of them
// behind, and a success gives them the source's modes and times.
func TestApplyNewDirectoriesInPlace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, dst, store := syncedOnce(t, "top", "top")
	before := treeSnapshot(t, dst, nil)

	mustNo(t, os.MkdirAll(filepath.Join(src, "n", "m", "k"), 0o755))
	mustNo(t, osWriteFile(src, "n/a", "a"))
	mustNo(t, osWriteFile(src, "n/m/b", "b"))
	mustNo(t, os.Symlink("../a", filepath.Join(src, "n", "m", "link")))
	mustNo(t, os.Chmod(filepath.Join(src, "n", "m"), 0o750))
	old := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	mustNo(t, os.Chtimes(filepath.Join(src, "n", "m"), old, old))
	tree, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	// Everything but n/m/b's chunk reaches the store: the apply fails.
	partial := newMemStore()
	_, _, err = Upload(ctx, &tree.Manifest, tree, partial, UploadOptions{})
	mustNo(t, err)
	bID := HashChunk([]byte("b"))
	partial.mu.Lock()
	delete(partial.chunks, bID)
	partial.mu.Unlock()
	if _, err := Apply(ctx, &tree.Manifest, partial, dst, ApplyOptions{}); err == nil {
		t.Fatal("Apply without n/m/b's chunk succeeded")
	}
	if after := treeSnapshot(t, dst, nil); len(after) != len(before) {
		t.Fatalf("a failed Apply left %d entries, want the %d there before", len(after), len(before))
	}

	_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
	mustNo(t, err)
	st, err := Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
	mustNo(t, err)
	if st.Dirs != 3 || st.Symlinks != 1 || st.Written != 2 {
		t.Errorf("stats = %+v, want 3 dirs, 1 link, 2 files written", st)
	}
	want := treeSnapshot(t, src, nil)
	got := treeSnapshot(t, dst, nil)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("destination differs from the source (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(filepath.Join(dst, "n", "m"))
	mustNo(t, err)
	if fi.Mode().Perm() != 0o750 || !fi.ModTime().Equal(old) {
		t.Errorf("n/m: mode %v, time %v; want 0750 and %v", fi.Mode().Perm(), fi.ModTime(), old)
	}
	entries, err := os.ReadDir(dst)
	mustNo(t, err)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), stagePrefix) {
			t.Errorf("staging directory %s left behind", e.Name())
		}
	}
}

// builtAndCopied writes a source with files (path: content), applies it
// to built (its record in built.state) and copies built to dst with cp -a:
// a tree Apply wrote, and one that came another way.
func builtAndCopied(t *testing.T, files map[string]string) (src, built, dst string, store *memStore, tree *Tree) {
	t.Helper()
	tmp := t.TempDir()
	src, built, dst = filepath.Join(tmp, "src"), filepath.Join(tmp, "built"), filepath.Join(tmp, "dst")
	for name, data := range files {
		mustNo(t, os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755))
		mustNo(t, osWriteFile(src, name, data))
	}
	store = newMemStore()
	tree = uploadTree(t, src, store)
	_, err := Apply(context.Background(), &tree.Manifest, store, built, ApplyOptions{StateFile: built + ".state"})
	mustNo(t, err)
	mustNo(t, exec.Command("cp", "-a", built, dst).Run())
	return src, built, dst, store, tree
}

// A tree put in place another way (here: copied) and adopted is synced
// afterwards like one Apply wrote: files that left the source go while
// unchanged, a file a job changed stays, and a mismatch is refused.
func TestAdopt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, _, dst, store, tree := builtAndCopied(t, map[string]string{
		"d/gone": "leaves the source", "d/edited": "the job edits this", "stays": "stays"})
	state := dst + ".state"
	_, err := Adopt(&tree.Manifest, dst, ApplyOptions{StateFile: state})
	mustNo(t, err)

	mustNo(t, os.WriteFile(filepath.Join(dst, "d", "edited"), []byte("the job's version"), 0o644))
	mustNo(t, os.Remove(filepath.Join(src, "d", "gone")))
	mustNo(t, os.Remove(filepath.Join(src, "d", "edited")))
	tree, err = BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	st, err := Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{StateFile: state})
	mustNo(t, err)
	if st.Deleted != 1 || st.Kept != 1 || st.Written != 0 {
		t.Errorf("stats = %+v, want 1 deleted (d/gone), 1 kept (d/edited), none written", st)
	}
	if _, err := os.Stat(filepath.Join(dst, "d", "gone")); !os.IsNotExist(err) {
		t.Errorf("d/gone: %v, want it removed", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dst, "d", "edited")); string(data) != "the job's version" {
		t.Errorf("d/edited = %q, want the job's version kept", data)
	}

	mustNo(t, os.WriteFile(filepath.Join(dst, "stays"), []byte("not what the source has"), 0o644))
	if _, err := Adopt(&tree.Manifest, dst, ApplyOptions{StateFile: state}); err == nil || !strings.Contains(err.Error(), "stays") {
		t.Errorf("Adopt of a tree that differs: %v, want an error naming stays", err)
	}
}

// AdoptCopy takes the source directory's record when it is of the same
// manifest, and otherwise looks at every entry as Adopt does.
func TestAdoptCopy(t *testing.T) {
	t.Parallel()
	_, built, dst, _, tree := builtAndCopied(t, map[string]string{"a": "a"})

	_, err := AdoptCopy(&tree.Manifest, dst, built, built+".state", ApplyOptions{StateFile: dst + ".state"})
	mustNo(t, err)
	absBuilt, _ := filepath.Abs(built)
	absDst, _ := filepath.Abs(dst)
	from, got := loadState(built+".state", absBuilt), loadState(dst+".state", absDst)
	if len(got.entries) != len(tree.Manifest.Entries) || !slices.Equal(got.recs, from.recs) {
		t.Errorf("adopted state %+v, want the built copy's records %+v", got.recs, from.recs)
	}

	// No record of the source: every entry is looked at, and a
	// mismatch is refused.
	mustNo(t, os.WriteFile(filepath.Join(dst, "a"), []byte("changed"), 0o644))
	if _, err := AdoptCopy(&tree.Manifest, dst, built, dst+".none", ApplyOptions{StateFile: dst + ".state"}); err == nil {
		t.Error("AdoptCopy without a record adopted a tree that differs")
	}
}
