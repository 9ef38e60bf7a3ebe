package transfer

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// watcherView lists what a file watcher reports between two states of a
// tree: every path that differs, with the directory holding each one
// created or removed. Below a new directory, or one removed, it leaves out
// paths at random (a watcher may see a new directory only after they were
// made, and names a removed one only by its own path), and it
// adds paths that did not change, or are not there, as a watcher may
// (but no ignore file: one reported makes Rebuild ask for a full scan).
func watcherView(rng *rand.Rand, before, after map[string]node) []string {
	var out []string
	add := func(p string) {
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			out = append(out, p[:i])
		} else {
			out = append(out, RootPath)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(after)) {
		if b, ok := before[p]; !ok || b != after[p] {
			out = append(out, p)
			if !ok {
				add(p)
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[p]; !ok {
			out = append(out, p)
			add(p)
		}
	}
	newDir := func(p string) bool {
		n, ok := after[p]
		b, was := before[p]
		return ok && n.Type == "dir" && (!was || b.Type != "dir")
	}
	goneDir := func(p string) bool {
		b, was := before[p]
		n, ok := after[p]
		return was && b.Type == "dir" && (!ok || n.Type != "dir")
	}
	out = slices.DeleteFunc(out, func(p string) bool {
		for d := p; strings.Contains(d, "/"); {
			d = d[:strings.LastIndexByte(d, '/')]
			if (newDir(d) || goneDir(d)) && rng.IntN(2) == 0 {
				return true
			}
		}
		return false
	})
	for _, p := range slices.Sorted(maps.Keys(after)) {
		name := p[strings.LastIndexByte(p, '/')+1:]
		if rng.IntN(40) == 0 && name != GitIgnoreFile && name != SkyIgnoreFile {
			out = append(out, p)
		}
	}
	out = append(out, "not/there", ".git/index")
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// rulesChanged reports whether an ignore file differs between two states
// of a tree (one removed with its directory counts).
func rulesChanged(before, after map[string]node) bool {
	isRules := func(p string) bool {
		name := p[strings.LastIndexByte(p, '/')+1:]
		return name == GitIgnoreFile || name == SkyIgnoreFile
	}
	for p, n := range before {
		if isRules(p) && after[p] != n {
			return true
		}
	}
	for p := range after {
		if _, ok := before[p]; isRules(p) && !ok {
			return true
		}
	}
	return false
}

// TestRebuildMatchesBuild changes random trees (ignore files kept as they
// are) and checks that Rebuild, given what a watcher reports, describes
// each version as BuildManifest does.
func TestRebuildMatchesBuild(t *testing.T) {
	for seed := range uint64(64) {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			src := t.TempDir()
			rng := rand.New(rand.NewPCG(seed, 11))
			g := &treeGen{rng: rng, dir: src, big: seed%4 == 0}
			g.fill(t, ".", 0)
			mustNo(t, os.MkdirAll(filepath.Join(src, ".git", "info"), 0o755))
			mustNo(t, os.WriteFile(filepath.Join(src, ".git", "info", "exclude"), []byte("*.dat\n"), 0o644))
			writeTestIgnores(t, src)
			g.finish(t)
			cache := NewStatCache()
			tree, err := BuildManifest(ctx, src, BuildOptions{Cache: cache})
			mustNo(t, err)
			snap := tree.Snapshot("token")
			skipGit := func(rel string) bool { return rel == ".git" || strings.HasPrefix(rel, ".git/") }
			rescans := 0
			for round := range 6 {
				before := treeSnapshot(t, src, skipGit)
				g.mutate(t, 1+rng.IntN(6))
				after := treeSnapshot(t, src, skipGit)
				changed := watcherView(rng, before, after)
				base := slices.Clone(snap.Manifest.Entries) // Rebuild spends snap
				got, err := Rebuild(ctx, snap, changed, BuildOptions{Cache: cache})
				if err == nil {
					// Its change leads from the last manifest to this one.
					d, ok := got.Change(ChunkID{}, ChunkID{})
					if !ok {
						t.Fatalf("round %d: Rebuild's tree has no change", round)
					}
					led, err := d.Apply(base)
					if err != nil {
						t.Fatalf("round %d: Rebuild's change does not apply: %v", round, err)
					}
					if diff := cmp.Diff(got.Manifest, led); diff != "" {
						t.Fatalf("round %d: Rebuild's change leads elsewhere (-Rebuild +change):\n%s", round, diff)
					}
					if again := Diff(&Manifest{Version: ManifestVersion, Entries: base}, ChunkID{}, &got.Manifest, ChunkID{}); len(again.Changed) != len(d.Changed) || len(again.Removed) != len(d.Removed) {
						t.Fatalf("round %d: Rebuild's change has %d changed and %d removed, Diff %d and %d", round, len(d.Changed), len(d.Removed), len(again.Changed), len(again.Removed))
					}
				}
				if errors.Is(err, ErrRescan) && rulesChanged(before, after) {
					rescans++
					got, err = BuildManifest(ctx, src, BuildOptions{Cache: cache})
				}
				if err != nil {
					t.Fatalf("round %d: Rebuild(%q): %v", round, changed, err)
				}
				want, err := BuildManifest(ctx, src, BuildOptions{})
				mustNo(t, err)
				if diff := cmp.Diff(want.Manifest, got.Manifest); diff != "" {
					t.Fatalf("round %d: Rebuild(%q) (-BuildManifest +Rebuild):\n%s", round, changed, diff)
				}
				if got.Stats.Files != want.Stats.Files || got.Stats.Bytes != want.Stats.Bytes || got.Stats.Dirs != want.Stats.Dirs {
					t.Fatalf("round %d: stats %+v, BuildManifest's %+v", round, got.Stats, want.Stats)
				}
				// The tree serves every chunk of its manifest.
				for _, c := range got.Manifest.Chunks() {
					rc, err := got.Get(ctx, c.ID)
					mustNo(t, err)
					mustNo(t, rc.Close())
				}
				snap = got.Snapshot("token")
			}
			if rescans > 2 {
				t.Errorf("%d of 6 rounds needed a full scan", rescans)
			}
		})
	}
}

// TestRebuildRescansWhenRulesChange: a changed ignore file, or a changed
// .git/info/exclude (which no watcher reports), needs a full scan.
func TestRebuildRescansWhenRulesChange(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	mustNo(t, os.MkdirAll(filepath.Join(src, "a", "new"), 0o755))
	mustNo(t, os.MkdirAll(filepath.Join(src, ".git", "info"), 0o755))
	mustNo(t, os.WriteFile(filepath.Join(src, "a", "x.py"), []byte("x"), 0o644))
	tree, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	snap := tree.Snapshot("")

	for _, tc := range []struct {
		name    string
		change  func()
		changed []string
		want    error
	}{
		{"a new .gitignore", func() { mustNo(t, os.WriteFile(filepath.Join(src, "a", GitIgnoreFile), []byte("*.py\n"), 0o644)) },
			[]string{"a", "a/" + GitIgnoreFile}, ErrRescan},
		{"a .skyignore at the root", func() { mustNo(t, os.WriteFile(filepath.Join(src, SkyIgnoreFile), []byte("a\n"), 0o644)) },
			[]string{RootPath, SkyIgnoreFile}, ErrRescan},
		{"the exclude file", func() { mustNo(t, os.WriteFile(filepath.Join(src, ".git", "info", "exclude"), []byte("a\n"), 0o644)) },
			nil, ErrRescan},
		{"the root is gone", func() { mustNo(t, os.RemoveAll(src)) }, []string{RootPath}, ErrRescan},
	} {
		tc.change()
		if _, err := Rebuild(ctx, snap, tc.changed, BuildOptions{}); !errors.Is(err, tc.want) {
			t.Errorf("%s: Rebuild: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestRebuildOfANewDirectoryWithRules: a directory made since the last
// build is walked whole, with its own ignore file.
func TestRebuildOfANewDirectoryWithRules(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	mustNo(t, os.WriteFile(filepath.Join(src, "top.py"), []byte("top"), 0o644))
	tree, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	mustNo(t, os.MkdirAll(filepath.Join(src, "pkg", "sub"), 0o755))
	mustNo(t, os.WriteFile(filepath.Join(src, "pkg", GitIgnoreFile), []byte("*.o\n"), 0o644))
	mustNo(t, os.WriteFile(filepath.Join(src, "pkg", "sub", "a.o"), []byte("obj"), 0o644))
	mustNo(t, os.WriteFile(filepath.Join(src, "pkg", "sub", "a.c"), []byte("src"), 0o644))
	// Only the root (whose listing changed) and the deepest file
	// reported: the file's directories are new, so they are walked.
	got, err := Rebuild(ctx, tree.Snapshot(""), []string{RootPath, "pkg/sub/a.c"}, BuildOptions{})
	mustNo(t, err)
	want, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	if diff := cmp.Diff(want.Manifest, got.Manifest); diff != "" {
		t.Fatalf("(-BuildManifest +Rebuild):\n%s", diff)
	}
	if i := findEntry(got.Manifest.Entries, "pkg/sub/a.o"); i >= 0 {
		t.Errorf("pkg/sub/a.o is described; pkg/.gitignore leaves it out")
	}
}

func TestSnapshotSaveLoad(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	mustNo(t, os.MkdirAll(filepath.Join(src, ".git", "info"), 0o755))
	mustNo(t, os.WriteFile(filepath.Join(src, ".git", "info", "exclude"), []byte("*.o\n"), 0o644))
	mustNo(t, os.WriteFile(filepath.Join(src, "f"), []byte("f"), 0o644))
	tree, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	file := filepath.Join(t.TempDir(), "snap")
	snap := tree.Snapshot("tok-1")
	mustNo(t, snap.Save(file))
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved snapshot: %v, mode %v; want 0600", err, fi.Mode())
	}
	got := LoadSnapshot(file, tree.Root())
	if got == nil {
		t.Fatal("LoadSnapshot: nil")
	}
	if diff := cmp.Diff(snap, got, cmp.AllowUnexported(Snapshot{}, stamp{}, fileStat{}), cmpopts.IgnoreFields(Snapshot{}, "encoded")); diff != "" {
		t.Errorf("loaded (-saved +loaded):\n%s", diff)
	}
	want, err := tree.Manifest.ID()
	mustNo(t, err)
	for what, s := range map[string]*Snapshot{"taken": snap, "loaded": got, "without its encoding": {Manifest: tree.Manifest}} {
		if id, err := s.ManifestID(); err != nil || id != want {
			t.Errorf("%s snapshot: ManifestID %s, %v; want %s", what, id, err, want)
		}
	}
	if LoadSnapshot(file, "/elsewhere") != nil {
		t.Error("a snapshot of another root loads")
	}
	data, err := os.ReadFile(file)
	mustNo(t, err)
	mustNo(t, os.WriteFile(file, data[:len(data)-3], 0o600))
	if LoadSnapshot(file, tree.Root()) != nil {
		t.Error("a damaged snapshot loads")
	}
}

// TestRebuildOfAReplacedDirectory: a directory renamed away and another
// made in its place is named by a watcher only by its path, not by what
// the first one held.
func TestRebuildOfAReplacedDirectory(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	mustNo(t, os.MkdirAll(filepath.Join(src, "a", "sub"), 0o755))
	mustNo(t, os.WriteFile(filepath.Join(src, "a", "x"), []byte("x"), 0o644))
	mustNo(t, os.WriteFile(filepath.Join(src, "a", "sub", "y"), []byte("y"), 0o644))
	tree, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	mustNo(t, os.Rename(filepath.Join(src, "a"), filepath.Join(src, "a.old")))
	mustNo(t, os.Mkdir(filepath.Join(src, "a"), 0o755))
	mustNo(t, os.WriteFile(filepath.Join(src, "a", "z"), []byte("z"), 0o644))
	got, err := Rebuild(ctx, tree.Snapshot(""), []string{RootPath, "a", "a.old", "a/z"}, BuildOptions{})
	mustNo(t, err)
	want, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	if diff := cmp.Diff(want.Manifest, got.Manifest); diff != "" {
		t.Fatalf("(-BuildManifest +Rebuild):\n%s", diff)
	}
}
