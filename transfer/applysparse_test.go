package transfer

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSparseApplyMatchesFullApply syncs random trees, changed a little
// each round, to two destinations where a "job" makes the same edits:
// one applied as a node without a record applies (looking at every path),
// the other as a node of a machine applies a delta in a view (looking
// only at the delta's paths and the view's own layer). Both must end up
// the same, file for file, with the same stats, and the second's record
// must read back from its state file.
//
// The view is simulated: the second destination is a plain directory,
// its lower layer what the first Apply left there, and its upper layer
// every path that differs from that now, as overlayfs would hold them
// (a directory whose inode changed was made again: opaque).
func TestSparseApplyMatchesFullApply(t *testing.T) {
	t.Parallel()
	seeds := 16
	if testing.Short() {
		seeds = 4
	}
	var rounds, sparse atomic.Int64
	t.Cleanup(func() {
		// Most rounds must have been sparse, or the test tests little.
		if !t.Failed() && sparse.Load() < rounds.Load()/2 {
			t.Errorf("only %d of %d rounds applied sparsely", sparse.Load(), rounds.Load())
		}
	})
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			r, s := sparseVersusFull(t, uint64(seed))
			rounds.Add(int64(r))
			sparse.Add(int64(s))
		})
	}
}

// sparseVersusFull returns how many rounds it synced, and how many of
// them sparsely.
func sparseVersusFull(t *testing.T, seed uint64) (rounds, usedSparse int) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, full, sparse := filepath.Join(tmp, "src"), filepath.Join(tmp, "full"), filepath.Join(tmp, "sparse")
	mustNo(t, os.Mkdir(src, 0o755))
	g := &treeGen{rng: rand.New(rand.NewPCG(seed, 99)), dir: src}
	for range 12 {
		g.fill(t, ".", 0)
	}
	g.finish(t)
	store := newMemStore()
	upload := func() (*Manifest, ChunkID) {
		tree := uploadTree(t, src, store)
		id, err := tree.Manifest.ID()
		mustNo(t, err)
		return &tree.Manifest, id
	}
	m, id := upload()
	fullState, sparseState := full+".state", sparse+".state"
	_, err := Apply(ctx, m, store, full, ApplyOptions{StateFile: fullState})
	mustNo(t, err)
	p, err := PlanApply(m, sparse, ApplyOptions{StateFile: sparseState})
	mustNo(t, err)
	_, err = p.Apply(ctx, store)
	mustNo(t, err)
	rec, recID := p.Record(), id
	lower, err := LayerFrom(sparse, rec)
	mustNo(t, err)
	view := &viewSim{base: statTree(t, sparse), once: map[string]bool{}}
	var spare *Record // done with, its entries built by the test
	owned := false    // rec's entries were built by the test

	rounds = 6
	for round := range rounds {
		jobEdits(t, g.rng, round, view.base, full, sparse)
		view.observe(t, sparse)
		before := statTree(t, src)
		g.mutate(t, 1+g.rng.IntN(3))
		if round%2 == 1 {
			// Directories keep their times, as after a checkout that
			// sets them: a removal shows in the source's delta only as
			// the removed path.
			for rel, n := range statTree(t, src) {
				if b, ok := before[rel]; ok && n.mode.IsDir() && b.mode.IsDir() {
					mt := time.Unix(0, b.mtime)
					mustNo(t, os.Chtimes(filepath.Join(src, rel), mt, mt))
				}
			}
		}
		m, id = upload()

		stFull, errFull := Apply(ctx, m, store, full, ApplyOptions{StateFile: fullState})

		prev := Manifest{Version: ManifestVersion, Entries: rec.Entries()}
		d := Diff(&prev, recID, m, id)
		// As an agent does, the record before last (when the test built
		// its entries) lends its memory to this one.
		var buf []Entry
		if spare != nil {
			buf = spare.Entries()
		}
		built, err := d.ApplyInto(rec.Entries(), buf)
		mustNo(t, err)
		if cap(buf) >= len(rec.Entries())+len(d.Changed) && &built.Entries[0] != &buf[:1][0] {
			t.Fatalf("round %d: ApplyInto did not build in the memory it was lent", round)
		}
		upper, hiding := view.layer(t, sparse)
		opts := ApplyOptions{StateFile: sparseState, Record: rec, Validated: true, Changes: &d, Reuse: spare,
			View: &View{Lower: lower, Upper: upper, Hiding: hiding}}
		spare = nil
		var stSparse ApplyStats
		p, errSparse := PlanApply(&built, sparse, opts)
		if errSparse == nil {
			if p.a.look != nil {
				usedSparse++
			}
			stSparse, errSparse = p.Apply(ctx, store)
			view.observe(t, sparse)
		}
		if (errFull == nil) != (errSparse == nil) {
			t.Fatalf("round %d: full apply: %v; sparse apply: %v", round, errFull, errSparse)
		}
		if errFull != nil {
			// Both refused to put the source's file where the job's
			// directory holds files of its own, or files it changed.
			// That is the job's to settle: the test moves them away, one
			// by one, and then syncs without a record, as a node does
			// after a failed sync.
			for try := 0; errFull != nil; try++ {
				held := heldPath.FindStringSubmatch(errFull.Error())
				if held == nil || try == 20 {
					t.Fatalf("round %d: %v", round, errFull)
				}
				for _, dir := range []string{full, sparse} {
					mustNo(t, os.Remove(filepath.Join(dir, filepath.FromSlash(held[1]))))
				}
				_, errFull = Apply(ctx, m, store, full, ApplyOptions{StateFile: fullState})
			}
			upper, hiding := view.layer(t, sparse)
			p, err := PlanApply(m, sparse, ApplyOptions{StateFile: sparseState, View: &View{Lower: lower, Upper: upper, Hiding: hiding}})
			mustNo(t, err)
			_, err = p.Apply(ctx, store)
			mustNo(t, err)
			view.observe(t, sparse)
			rec, recID, owned = p.Record(), id, false
			continue
		}
		if diff := cmp.Diff(timesOfSource(m, treeSnapshot(t, full, nil)), timesOfSource(m, treeSnapshot(t, sparse, nil))); diff != "" {
			t.Fatalf("round %d: trees differ (-full +sparse):\n%s", round, diff)
		}
		if stFull != stSparse {
			t.Fatalf("round %d: stats differ: full %+v, sparse %+v", round, stFull, stSparse)
		}
		if owned {
			spare = rec
		}
		rec, recID, owned = p.Record(), id, true
		abs, _ := filepath.Abs(sparse)
		onDisk := loadState(sparseState, abs)
		if diff := cmp.Diff(rec.st.entries, onDisk.entries); diff != "" {
			t.Fatalf("round %d: state file's entries differ from the record (-memory +file):\n%s", round, diff)
		}
		if !slices.Equal(rec.st.recs, onDisk.recs) {
			t.Fatalf("round %d: state file's records differ from those in memory", round)
		}
		if diff := cmp.Diff(m.Entries, rec.st.entries); diff != "" {
			t.Fatalf("round %d: record is not of the manifest (-manifest +record):\n%s", round, diff)
		}
	}
	return rounds, usedSparse
}

// pathStat is what viewSim compares of a path.
type pathStat struct {
	mode  fs.FileMode
	mtime int64
	size  int64
	ino   uint64
}

func statTree(t *testing.T, dir string) map[string]pathStat {
	t.Helper()
	out := map[string]pathStat{}
	mustNo(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		_, ino, _ := fileIdentity(fi)
		out[filepath.ToSlash(rel)] = pathStat{mode: fi.Mode(), mtime: fi.ModTime().UnixNano(), size: fi.Size(), ino: ino}
		return nil
	}))
	return out
}

// viewSim stands in for an overlayfs view over base (what a tree held
// when it became the lower layer): it keeps what the upper layer would
// hold, as a path once changed stays there (copied up) until removed.
type viewSim struct {
	base map[string]pathStat
	once map[string]bool // paths that differed from base when looked at
}

// observe notes what differs from base in the tree at dir now. Call it
// after each change to the tree, the job's or a sync's.
func (v *viewSim) observe(t *testing.T, dir string) map[string]pathStat {
	now := statTree(t, dir)
	for p, n := range now {
		if b, ok := v.base[p]; !ok || b != n {
			v.once[p] = true
		}
	}
	for p := range v.base {
		if _, ok := now[p]; !ok {
			v.once[p] = true
		}
	}
	return now
}

// layer returns the upper layer's paths, and those of them that hide what
// is below them (see View): files, whiteouts, and directories made again
// (opaque). A path removed that base lacks leaves nothing.
func (v *viewSim) layer(t *testing.T, dir string) (upper, hiding []string) {
	now := v.observe(t, dir)
	for p := range v.once {
		n, there := now[p]
		b, inBase := v.base[p]
		switch {
		case !there && !inBase:
			delete(v.once, p)
			continue
		case !there: // a whiteout
		case n.mode.IsDir() && inBase && b.mode.IsDir() && b.ino == n.ino:
			upper = append(upper, p)
			continue
		}
		upper = append(upper, p)
		hiding = append(hiding, p)
	}
	return upper, hiding
}

// jobEdits makes the same random edits in both trees: a synced file
// rewritten, deleted or given another mode, and a new file of the job's.
// Half the files edited are ones base lacks (synced there since).
func jobEdits(t *testing.T, rng *rand.Rand, round int, base map[string]pathStat, dirs ...string) {
	t.Helper()
	snap := treeSnapshot(t, dirs[0], isJobPath)
	var files, newFiles, subdirs []string
	for rel, n := range snap {
		switch n.Type {
		case "file":
			files = append(files, rel)
			if _, ok := base[rel]; !ok {
				newFiles = append(newFiles, rel)
			}
		case "dir":
			subdirs = append(subdirs, rel)
		}
	}
	slices.Sort(files)
	slices.Sort(newFiles)
	slices.Sort(subdirs)
	for i := range 2 {
		var edit func(dir string) error
		switch r := rng.IntN(4); {
		case r < 3 && len(files) > 0:
			rel := files[rng.IntN(len(files))]
			if len(newFiles) > 0 && rng.IntN(2) == 0 {
				rel = newFiles[rng.IntN(len(newFiles))]
			}
			switch r {
			case 0:
				edit = func(dir string) error {
					if err := os.Chmod(filepath.Join(dir, rel), 0o644); err != nil {
						return err
					}
					return os.WriteFile(filepath.Join(dir, rel), []byte("job's edit"), 0)
				}
			case 1:
				edit = func(dir string) error { return os.Remove(filepath.Join(dir, rel)) }
			default:
				edit = func(dir string) error { return os.Chmod(filepath.Join(dir, rel), 0o600) }
			}
		default:
			rel := path.Join(subdirs[rng.IntN(len(subdirs))], fmt.Sprintf("job-%d-%d.out", round, i))
			edit = func(dir string) error { return os.WriteFile(filepath.Join(dir, rel), []byte(rel), 0o644) }
		}
		for _, dir := range dirs {
			if err := edit(dir); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
	}
}

// timesOfSource drops the mtimes of what the source lacks: the job's
// files, and what was kept because the job changed it, written at
// different times in the two trees.
func timesOfSource(m *Manifest, snap map[string]node) map[string]node {
	for rel, n := range snap {
		if findEntry(m.Entries, rel) < 0 {
			n.MTime = 0
			snap[rel] = n
		}
	}
	return snap
}

// heldPath finds, in Apply's refusal to replace a directory, the path
// that stopped it.
var heldPath = regexp.MustCompile(`it holds (.*), which sky-coord did not put there`)

// TestSparseApplyRestoresAFileOnlyItsViewHeld: a file an earlier sync
// added (the lower layer lacks it) and the job deleted leaves no trace in
// the view's own layer; a sparse apply two syncs later must still look
// at it, and put it back.
func TestSparseApplyRestoresAFileOnlyItsViewHeld(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	mustNo(t, os.Mkdir(src, 0o755))
	mustNo(t, osWriteFile(src, "other.txt", "v0"))
	mustNo(t, os.Chtimes(src, time.Unix(1e9, 0), time.Unix(1e9, 0)))
	for i := range 40 { // a tree big enough for a sparse apply to pay
		mustNo(t, osWriteFile(src, fmt.Sprintf("same%02d.txt", i), "same"))
	}
	store := newMemStore()
	tree := uploadTree(t, src, store)
	p, err := PlanApply(&tree.Manifest, dst, ApplyOptions{StateFile: state})
	mustNo(t, err)
	_, err = p.Apply(ctx, store)
	mustNo(t, err)
	rec := p.Record()
	recID, err := tree.Manifest.ID()
	mustNo(t, err)
	lower, err := LayerFrom(dst, rec)
	mustNo(t, err)
	view := &viewSim{base: statTree(t, dst), once: map[string]bool{}}
	sync := func(change func()) {
		t.Helper()
		change()
		tree := uploadTree(t, src, store)
		id, err := tree.Manifest.ID()
		mustNo(t, err)
		prev := Manifest{Version: ManifestVersion, Entries: rec.Entries()}
		d := Diff(&prev, recID, &tree.Manifest, id)
		built, err := d.Apply(rec.Entries())
		mustNo(t, err)
		upper, hiding := view.layer(t, dst)
		p, err := PlanApply(&built, dst, ApplyOptions{StateFile: state, Record: rec, Validated: true, Changes: &d,
			View: &View{Lower: lower, Upper: upper, Hiding: hiding}})
		mustNo(t, err)
		if p.a.look == nil {
			t.Fatal("a one-file change was not applied sparsely")
		}
		_, err = p.Apply(ctx, store)
		mustNo(t, err)
		view.observe(t, dst)
		rec, recID = p.Record(), id
	}
	sync(func() {
		mustNo(t, osWriteFile(src, "new.txt", "new"))
		mustNo(t, os.Chtimes(src, time.Unix(1e9, 0), time.Unix(1e9, 0)))
	})
	sync(func() {
		mustNo(t, osWriteFile(src, "other.txt", "v1"))
		mustNo(t, os.Chtimes(src, time.Unix(1e9, 0), time.Unix(1e9, 0)))
	})
	mustNo(t, os.Remove(filepath.Join(dst, "new.txt"))) // the job's
	view.observe(t, dst)
	sync(func() {
		mustNo(t, osWriteFile(src, "other.txt", "v2"))
		mustNo(t, os.Chtimes(src, time.Unix(1e9, 0), time.Unix(1e9, 0)))
	})
	if data, err := os.ReadFile(filepath.Join(dst, "new.txt")); err != nil || string(data) != "new" {
		t.Fatalf("new.txt after the third sync: %q, %v; want it put back", data, err)
	}
}

// A spare record lends memory for as many entries as asked, and holds
// none.
func TestSpareRecord(t *testing.T) {
	t.Parallel()
	r := SpareRecord(1000)
	if len(r.Entries()) != 0 || cap(r.Entries()) != 1000 || len(r.st.recs) != 0 || cap(r.st.recs) != 1000 {
		t.Fatalf("spare: %d/%d entries, %d/%d records; want 0/1000 of each", len(r.Entries()), cap(r.Entries()), len(r.st.recs), cap(r.st.recs))
	}
	d := Delta{Changed: []Entry{{Path: "a", Type: TypeFile, Mode: 0o644}}}
	m, err := d.ApplyInto([]Entry{{Path: RootPath, Type: TypeDir, Mode: 0o755}}, r.Entries())
	mustNo(t, err)
	if len(m.Entries) != 2 || &m.Entries[0] != &r.Entries()[:1][0] {
		t.Fatal("ApplyInto did not build in the spare's memory")
	}
}
