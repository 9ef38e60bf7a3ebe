package transfer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ignoredByTestRules mirrors the fixed ignore files writeTestIgnores
// writes under src: a root .gitignore with "*.tmp" and "/build/", and
// .gitignore files holding "*.log" (found where they are, since a
// directory that had one may have been renamed).
func ignoredByTestRules(src, rel string) bool {
	parts := strings.Split(rel, "/")
	if parts[0] == ".git" {
		return true
	}
	if parts[0] == "build" {
		// "/build/" matches the directory only.
		fi, err := os.Lstat(filepath.Join(src, "build"))
		if err == nil && fi.IsDir() {
			return true
		}
	}
	for i, part := range parts {
		if strings.HasSuffix(part, ".tmp") {
			return true // "*.tmp" matches at any level, and hides what is below
		}
		if i == 0 || !strings.HasSuffix(part, ".log") {
			continue
		}
		// "*.log" in a .gitignore of any directory above.
		for j := 1; j <= i; j++ {
			gi := filepath.Join(src, filepath.FromSlash(strings.Join(parts[:j], "/")), GitIgnoreFile)
			if fi, err := os.Lstat(gi); err == nil && fi.Mode().IsRegular() {
				return true
			}
		}
	}
	return false
}

func writeTestIgnores(t *testing.T, dir string) {
	t.Helper()
	mustNo(t, os.WriteFile(filepath.Join(dir, GitIgnoreFile), []byte("*.tmp\n/build/\n"), 0o644))
	mustNo(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), "d") && p != dir {
			if fi, err := os.Lstat(filepath.Join(p, GitIgnoreFile)); err == nil && fi.Mode().IsRegular() {
				return nil
			}
			_ = os.RemoveAll(filepath.Join(p, GitIgnoreFile))
			return os.WriteFile(filepath.Join(p, GitIgnoreFile), []byte("*.log\n"), 0o644)
		}
		return nil
	}))
}

// expectedTree is the source snapshot without ignored paths.
func expectedTree(t *testing.T, src string) map[string]node {
	t.Helper()
	return treeSnapshot(t, src, func(rel string) bool { return ignoredByTestRules(src, rel) })
}

func isJobPath(rel string) bool {
	return strings.HasPrefix(path.Base(rel), "job-")
}

// TestSyncRoundTrip builds random trees, uploads them, applies them to a
// fresh directory and to one applied before (where a "job" has written
// files of its own), changes the source, and checks after every round
// that each destination equals the source less ignored paths, and that
// the job's files are all still there.
func TestSyncRoundTrip(t *testing.T) {
	t.Parallel()
	seeds := 12
	if testing.Short() {
		seeds = 4
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			syncRoundTrip(t, uint64(seed))
		})
	}
}

func syncRoundTrip(t *testing.T, seed uint64) {
	ctx := context.Background()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	mustNo(t, os.Mkdir(src, 0o755))
	g := &treeGen{rng: rand.New(rand.NewPCG(seed, 7)), dir: src, big: seed%3 == 0}
	g.fill(t, ".", 0)
	mustNo(t, os.MkdirAll(filepath.Join(src, ".git", "info"), 0o755))
	mustNo(t, os.WriteFile(filepath.Join(src, ".git", "HEAD"), []byte("ref: x\n"), 0o644))
	mustNo(t, os.MkdirAll(filepath.Join(src, "build", "out"), 0o755))
	mustNo(t, os.WriteFile(filepath.Join(src, "build", "out", "a.o"), []byte("obj"), 0o644))
	store, err := NewDiskStore(filepath.Join(tmp, "store"))
	mustNo(t, err)
	var m Manifest
	var mid ChunkID
	cache := NewStatCache()
	cacheFile := filepath.Join(tmp, "statcache")
	inPlace := filepath.Join(tmp, "node", "sky_workdir")
	jobFiles := map[string]node{}
	// The in-place destination is synced as an agent syncs it: with the
	// record of the last Apply kept in memory, checked each time against
	// what the state file (snapshot and journal) reads back as.
	var rec *Record
	var recID ChunkID
	applyInPlace := func() (ApplyStats, error) {
		// With a record, the manifest is built as a node builds it
		// from the head's delta: from the record's entries.
		target := &m
		if rec != nil {
			prev := Manifest{Version: ManifestVersion, Entries: rec.Entries()}
			d := Diff(&prev, recID, &m, mid)
			built, err := d.Apply(rec.Entries())
			if err != nil {
				t.Fatalf("delta from the last record: %v", err)
			}
			target = &built
		}
		p, err := PlanApply(target, inPlace, ApplyOptions{Record: rec})
		if err != nil {
			rec = nil
			return ApplyStats{}, err
		}
		st, err := p.Apply(ctx, store)
		if rec, recID = p.Record(), mid; rec != nil {
			abs, _ := filepath.Abs(inPlace)
			onDisk := loadState(DefaultStateFile(abs), abs)
			if diff := cmp.Diff(rec.st.entries, onDisk.entries); diff != "" {
				t.Fatalf("state file's entries differ from the record in memory (-memory +file):\n%s", diff)
			}
			if !slices.Equal(rec.st.recs, onDisk.recs) {
				t.Fatalf("state file's records differ from those in memory")
			}
		}
		return st, err
	}

	for round := range 4 {
		writeTestIgnores(t, src)
		g.finish(t)
		tree, err := BuildManifest(ctx, src, BuildOptions{Cache: cache})
		if err != nil {
			t.Fatalf("round %d: BuildManifest: %v", round, err)
		}
		mid, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
		if err != nil {
			t.Fatalf("round %d: Upload: %v", round, err)
		}
		mustNo(t, cache.Save(cacheFile))
		cache = LoadStatCache(cacheFile)
		m, err = FetchManifest(ctx, mid, store)
		if err != nil {
			t.Fatalf("round %d: FetchManifest: %v", round, err)
		}
		if diff := cmp.Diff(tree.Manifest, m); diff != "" {
			t.Fatalf("round %d: manifest after store round trip (-built +fetched):\n%s", round, diff)
		}
		want := expectedTree(t, src)

		fresh := filepath.Join(tmp, fmt.Sprintf("fresh%d", round), "wd")
		if _, err := Apply(ctx, &m, store, fresh, ApplyOptions{}); err != nil {
			t.Fatalf("round %d: Apply to a fresh directory: %v", round, err)
		}
		if diff := cmp.Diff(want, treeSnapshot(t, fresh, nil)); diff != "" {
			t.Fatalf("round %d: fresh destination differs from source (-want +got):\n%s", round, diff)
		}

		st, err := applyInPlace()
		for try := 0; try < 10 && err != nil && strings.Contains(err.Error(), "did not put there"); try++ {
			// The source put a file where the job has a directory with
			// files of its own: refused, as it must be. Move the job's
			// files away and try again.
			for rel := range jobFiles {
				if _, ok := want[rel]; ok || !strings.Contains(err.Error(), rel) {
					continue
				}
				mustNo(t, os.Remove(filepath.Join(inPlace, filepath.FromSlash(rel))))
				delete(jobFiles, rel)
			}
			st, err = applyInPlace()
		}
		if err != nil {
			t.Fatalf("round %d: Apply in place: %v", round, err)
		}
		got := treeSnapshot(t, inPlace, isJobPath)
		for rel, n := range got {
			if _, ok := want[rel]; ok || n.Type != "dir" {
				continue
			}
			for jf := range jobFiles {
				if strings.HasPrefix(jf, rel+"/") {
					delete(got, rel) // kept: it holds the job's files
					break
				}
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("round %d: in-place destination differs from source (-want +got):\n%s\nstats %+v", round, diff, st)
		}
		gotJob := treeSnapshot(t, inPlace, nil)
		for rel, n := range jobFiles {
			gn, ok := gotJob[rel]
			if !ok {
				t.Fatalf("round %d: the job's file %s was deleted (stats %+v)", round, rel, st)
			}
			if gn.Sum != n.Sum {
				t.Fatalf("round %d: the job's file %s was changed", round, rel)
			}
		}
		// A second apply of the same manifest writes nothing.
		st2, err := applyInPlace()
		mustNo(t, err)
		if st2.Written != 0 || st2.Deleted != 0 || st2.Dirs != 0 || st2.Symlinks != 0 {
			t.Fatalf("round %d: re-applying the same manifest changed things: %+v", round, st2)
		}

		// The job writes files of its own into some directories.
		for i := range 3 {
			dirs := []string{"."}
			for rel, n := range got {
				if n.Type == "dir" && n.Mode&0o200 != 0 {
					dirs = append(dirs, rel)
				}
			}
			d := dirs[g.rng.IntN(len(dirs))]
			rel := path.Join(d, fmt.Sprintf("job-%d-%d.out", round, i))
			p := filepath.Join(inPlace, filepath.FromSlash(rel))
			if err := os.WriteFile(p, []byte(rel), 0o644); err != nil {
				continue
			}
			jobFiles[rel] = treeSnapshot(t, filepath.Dir(p), nil)[path.Base(rel)]
		}
		g.mutate(t, 8)
	}
}

// TestOneFileChangeMovesOnlyItsChunks changes one big file in a tree and
// counts the chunks a re-sync has to move.
func TestOneFileChangeMovesOnlyItsChunks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	mustNo(t, os.MkdirAll(filepath.Join(src, "pkg"), 0o755))
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for i := range 200 {
		mustNo(t, os.WriteFile(filepath.Join(src, "pkg", fmt.Sprintf("m%03d.py", i)), random(1+rng.IntN(8000)), 0o644))
	}
	big := random(12 << 20)
	mustNo(t, os.WriteFile(filepath.Join(src, "weights.bin"), big, 0o644))

	store, err := NewDiskStore(filepath.Join(tmp, "store"))
	mustNo(t, err)
	tree, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	_, st, err := Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
	mustNo(t, err)
	bigChunks := len(tree.Manifest.Entries[len(tree.Manifest.Entries)-1].Chunks)
	if bigChunks < 4 {
		t.Fatalf("12 MiB file cut into %d chunks, want several", bigChunks)
	}
	if st.Chunks != 200+bigChunks {
		t.Fatalf("first upload sent %d chunks, want %d", st.Chunks, 200+bigChunks)
	}
	dst := filepath.Join(tmp, "dst")
	_, err = Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
	mustNo(t, err)

	// Insert 100 bytes in the middle of the big file: content-defined
	// chunking re-cuts only around the change.
	changed := append(append(append([]byte{}, big[:6<<20]...), random(100)...), big[6<<20:]...)
	mustNo(t, os.WriteFile(filepath.Join(src, "weights.bin"), changed, 0o644))
	tree2, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	var ids []ChunkID
	for _, c := range tree2.Manifest.Chunks() {
		ids = append(ids, c.ID)
	}
	missing, err := store.Missing(ctx, ids)
	mustNo(t, err)
	if len(missing) == 0 || len(missing) > 2 {
		t.Fatalf("after a 100-byte insert, %d chunks are missing, want 1 or 2", len(missing))
	}
	_, st, err = Upload(ctx, &tree2.Manifest, tree2, store, UploadOptions{})
	mustNo(t, err)
	if st.Chunks != len(missing) {
		t.Fatalf("re-upload: %+v, want %d chunks sent", st, len(missing))
	}
	plan, err := PlanApply(&tree2.Manifest, dst, ApplyOptions{})
	mustNo(t, err)
	if need := plan.Chunks(); len(need) != len(tree2.Manifest.Entries[len(tree2.Manifest.Entries)-1].Chunks) {
		t.Fatalf("plan.Chunks() = %d chunks, want those of the one changed file", len(need))
	}
	ast, err := plan.Apply(ctx, store)
	mustNo(t, err)
	if ast.Written != 1 || ast.Unchanged != 200 {
		t.Fatalf("Apply: %+v, want 1 file written and 200 unchanged", ast)
	}
}

// TestApplyKeepsJobFiles checks the ownership rules: files sky-coord wrote
// and that left the source go, files the job wrote or changed stay.
func TestApplyKeepsJobFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	write := func(root, rel, data string) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		mustNo(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mustNo(t, os.WriteFile(p, []byte(data), 0o644))
	}
	write(src, "a.py", "a")
	write(src, "gone.py", "gone")
	write(src, "edited.py", "edited")
	write(src, "olddir/x.py", "x")
	write(src, "mixed/y.py", "y")
	store := newMemStore()
	sync := func() ApplyStats {
		t.Helper()
		tree, err := BuildManifest(ctx, src, BuildOptions{})
		mustNo(t, err)
		_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
		mustNo(t, err)
		st, err := Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
		mustNo(t, err)
		return st
	}
	sync()
	write(dst, "out.log", "job")        // the job's own file
	write(dst, "mixed/job.ckpt", "job") // in a directory that will leave the source
	write(dst, "edited.py", "job edit") // the job changed a synced file
	mustNo(t, os.Remove(filepath.Join(src, "gone.py")))
	mustNo(t, os.Remove(filepath.Join(src, "edited.py")))
	mustNo(t, os.RemoveAll(filepath.Join(src, "olddir")))
	mustNo(t, os.RemoveAll(filepath.Join(src, "mixed")))
	st := sync()
	want := map[string]bool{
		"a.py": true, "out.log": true, "edited.py": true, "mixed": true, "mixed/job.ckpt": true,
	}
	got := map[string]bool{}
	for rel := range treeSnapshot(t, dst, nil) {
		if rel != "." {
			got[rel] = true
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after the source lost files (-want +got):\n%s", diff)
	}
	// gone.py, olddir/x.py, olddir, mixed/y.py deleted; edited.py and mixed kept.
	if st.Deleted != 4 || st.Kept != 2 {
		t.Fatalf("stats %+v, want 4 deleted and 2 kept", st)
	}
	data, err := os.ReadFile(filepath.Join(dst, "edited.py"))
	mustNo(t, err)
	if string(data) != "job edit" {
		t.Fatalf("edited.py = %q, want the job's edit kept", data)
	}

	// A source file reappearing where the job has a directory of its own
	// is refused before anything changes.
	write(src, "mixed", "now a file")
	tree, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
	mustNo(t, err)
	_, err = Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "did not put there") {
		t.Fatalf("Apply over the job's directory: err = %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "mixed", "job.ckpt")); err != nil {
		t.Fatalf("the job's file is gone after a refused apply: %v", err)
	}
}
