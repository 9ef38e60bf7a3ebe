package transfer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// ApplyOptions tunes Apply.
type ApplyOptions struct {
	// StateFile is where Apply records what it wrote, to know on the next
	// sync which paths are its own to delete. Empty means
	// DefaultStateFile(dst). Keep it outside dst.
	StateFile string
	// Workers is how many directories are written at once; zero means the
	// CPUs, at least 2 (one writer per directory: see writeFiles).
	Workers int
	// Progress receives "apply" progress: files and bytes written.
	Progress ProgressFunc
	// SkipUnchanged trusts that entries identical in the last applied
	// manifest and this one are still on disk as written, and does not
	// even stat them: a re-sync then costs in proportion to what changed,
	// not to the size of the tree. The price: a synced file the job has
	// edited is not put back (rsync, and Apply without this, put it back).
	SkipUnchanged bool
	// View, when set, says that dst is a copy-on-write view of a tree
	// Apply wrote (see View): only the paths the view's own layer may
	// have changed are looked at. A re-sync then costs in proportion to
	// what changed, and still puts back what the job edited.
	View *View
	// Record, when set, is the record of dst a plan of the last Apply
	// there returned (ApplyPlan.Record), which its caller vouches is
	// still what the state file holds: Apply then does not read the file.
	// One of another destination or state file is not used.
	Record *Record
	// Validated says the caller validated the manifest (DecodeManifest
	// and Delta.Apply do) and has not changed it since, so that PlanApply
	// does not walk it again for that.
	Validated bool
	// Changes, with Record, says the manifest is what this delta leads to
	// from the Record's entries (Delta.Apply). With a View or
	// SkipUnchanged to vouch for the paths it does not name, Apply then
	// looks only at the paths the delta names, those the view's own
	// layer holds, and the directories above them: a re-sync costs in
	// proportion to what changed, on the node and in the source.
	Changes *Delta
	// Reuse is a record of this destination the caller is done with (not
	// Record): a sparse apply keeps the new record's file records in its
	// memory. (Its entries are the caller's, to pass to Delta.ApplyInto
	// when they were built that way.)
	Reuse *Record
}

// Record is what Apply knows of a destination after applying a manifest
// there: the manifest's entries and how each file looked on disk right
// after. It is what the state file holds; a caller that syncs the same
// destination again and again keeps it, so as not to read the file each
// time (ApplyOptions.Record).
type Record struct {
	st    *applyState
	state string // the state file
}

// Entries returns the entries of the manifest the record is of. They are
// shared: do not change them.
func (r *Record) Entries() []Entry { return r.st.entries }

// ApplyStats counts what Apply did.
type ApplyStats struct {
	Files        int   // regular files in the manifest
	Written      int   // files written, new or changed
	WrittenBytes int64 // their bytes
	Unchanged    int   // files left as they were (a mode or mtime may have been set)
	Dirs         int   // directories created
	Symlinks     int   // symbolic links created or replaced
	Deleted      int   // paths removed because they left the source
	Kept         int   // paths that left the source but were kept: changed on the node, or directories holding the job's files
}

// Apply makes the directory dst hold the tree m describes, reading file
// contents from src (normally the node's ChunkStore, filled by a Fetcher
// with the plan's Chunks first). Like rsync -a without --delete, what the
// job created in dst stays; unlike it, files that sky-coord itself put
// there and that have since left the source are removed (only while they
// are still as sky-coord wrote them). The record of what it wrote is kept
// in ApplyOptions.StateFile.
//
// Atomicity: every new or changed file is first written in full to a
// staging directory inside dst (dst does not exist yet: the whole tree is
// built beside it and renamed into place); only when all are written are
// deletions made and the files renamed into place, so a failed fetch or a
// full disk leaves dst as it was. Files whose content and metadata already
// match are not touched. Symbolic links are created as they are, whatever
// they point to, but nothing is ever written or deleted through one.
//
// When m's root is a file, dst is that file (replaced atomically).
//
// Apply is PlanApply followed by ApplyPlan.Apply.
func Apply(ctx context.Context, m *Manifest, src Source, dst string, opts ApplyOptions) (ApplyStats, error) {
	p, err := PlanApply(m, dst, opts)
	if err != nil {
		return ApplyStats{}, err
	}
	return p.Apply(ctx, src)
}

// ApplyPlan is what Apply will do to a directory, decided by looking at
// it: which files are missing or changed there, so which chunks it needs.
type ApplyPlan struct {
	a    *applier
	used bool
	rec  *Record
}

// PlanApply looks at dst and plans the application of m. Fetch the plan's
// Chunks into the store, then call Apply soon: the plan trusts what it saw.
func PlanApply(m *Manifest, dst string, opts ApplyOptions) (*ApplyPlan, error) {
	a, err := newApplier(m, dst, opts)
	if err != nil {
		return nil, err
	}
	if err := a.plan(); err != nil {
		return nil, fmt.Errorf("sync to %s: %w", dst, err)
	}
	return &ApplyPlan{a: a}, nil
}

// Chunks returns the chunks the plan will read: those of the files that
// are missing or changed in dst.
func (p *ApplyPlan) Chunks() []ChunkRef {
	m := p.a.m
	seen := make(map[ChunkID]bool)
	var refs []ChunkRef
	for i := range p.a.each(0) {
		e := &m.Entries[i]
		if e.Type != TypeFile || p.a.act(i).kind == actKeep {
			continue
		}
		for _, c := range e.Chunks {
			if !seen[c.ID] {
				seen[c.ID] = true
				refs = append(refs, c)
			}
		}
	}
	return refs
}

// Apply carries the plan out, reading chunks from src. A plan is applied
// once.
func (p *ApplyPlan) Apply(ctx context.Context, src Source) (ApplyStats, error) {
	if p.used {
		return ApplyStats{}, errors.New("apply plan used twice: plan again")
	}
	p.used = true
	p.a.src = src
	if err := p.a.run(ctx); err != nil {
		return p.a.stats, fmt.Errorf("sync to %s: %w", p.a.dst, err)
	}
	if p.a.next != nil {
		p.rec = &Record{st: p.a.next, state: p.a.state}
	}
	return p.a.stats, nil
}

// Record returns the record of the destination once the plan is applied,
// to pass to the next Apply there (ApplyOptions.Record); nil before, after
// a failure, and for a destination that is one file.
func (p *ApplyPlan) Record() *Record { return p.rec }

type actionKind int

const (
	actKeep    actionKind = iota // on disk as wanted; mode or mtime may need setting
	actCreate                    // nothing there
	actReplace                   // something else there, to be removed first
)

type action struct {
	kind   actionKind
	onDisk fs.FileInfo // what Lstat found; nil when nothing
	staged string      // for files and links (and new directories in place): where the new one waits
	// inNew: the entry is inside a directory this Apply creates; in
	// place, it is built inside the staging directory and moves into
	// dst with that directory, in one rename.
	inNew bool
	rec   fileRecord // for files: the on-disk record once in place
}

type applier struct {
	m     *Manifest
	src   Source
	dst   string // absolute; a symbolic link to a directory is resolved
	opts  ApplyOptions
	state string

	prev *applyState
	from []int // by entry: the index of its path in prev, or -1; nil when sparse (prevAt)
	// look: the entries a sparse apply looks at, sorted (sparseLook); nil
	// for all. The others are as the last Apply left them.
	look    []int
	view    *viewLookup // nil without a View
	next    *applyState // once saved
	actions []action
	fresh   bool   // dst does not exist: build beside it
	work    string // the directory being written: dst, or the tree beside it
	stage   string // in place: the staging directory inside dst
	stats   ApplyStats
	realDir map[string]bool // deletion paths: ancestors checked to be real directories
}

const (
	stagePrefix = ".sky-sync-stage-"
	newPrefix   = ".sky-sync-new-"
)

func newApplier(m *Manifest, dst string, opts ApplyOptions) (*applier, error) {
	if !opts.Validated {
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("sync to %s: %w", dst, err)
		}
	}
	abs, err := filepath.Abs(dst)
	if err != nil {
		return nil, fmt.Errorf("sync to %s: %w", dst, err)
	}
	if filepath.Dir(abs) == abs {
		return nil, fmt.Errorf("sync to %s: will not sync onto the root directory", dst)
	}
	a := &applier{m: m, dst: abs, opts: opts, state: opts.StateFile}
	if a.state == "" {
		a.state = DefaultStateFile(abs)
	}
	if a.opts.Workers <= 0 {
		a.opts.Workers = max(2, runtime.GOMAXPROCS(0))
	}
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&fs.ModeSymlink != 0 && m.Entries[0].Type == TypeDir {
		// A link to a directory (say ~/sky_workdir -> /data/wd) is synced
		// into, as rsync does with "src/ dst/".
		if resolved, err := filepath.EvalSymlinks(abs); err == nil {
			if rfi, err := os.Stat(resolved); err == nil && rfi.IsDir() {
				a.dst = resolved
			}
		}
	}
	return a, nil
}

func (a *applier) abs(rel string) string {
	if rel == RootPath {
		return a.work
	}
	// rel is clean and relative (Validate checked), so plain joining is
	// enough, and much cheaper than filepath.Join on big trees.
	return a.work + string(filepath.Separator) + filepath.FromSlash(rel)
}

func parentPath(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return RootPath
}

// plan looks at dst and decides, per manifest entry, what to do.
func (a *applier) plan() error {
	a.work = a.dst
	root := &a.m.Entries[0]
	fi, err := os.Lstat(a.dst)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		a.fresh = true
		a.actions = make([]action, len(a.m.Entries))
		for i := range a.actions {
			a.actions[i].kind = actCreate
		}
		return nil
	case err != nil:
		return err
	}
	if root.Type == TypeFile {
		if fi.IsDir() {
			return errors.New("a directory is there, and the source is a file; remove it or choose another destination")
		}
		a.from = []int{-1} // a file has no record to go by
		a.actions = []action{a.fileAction(0, fi)}
		return nil
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if fi, err = os.Stat(a.dst); err != nil {
			return err
		}
	}
	if !fi.IsDir() {
		return errors.New("it exists and is not a directory; remove it or choose another destination")
	}
	a.loadPrev()
	view := a.opts.View.lookupIn(a.m)
	a.view = view
	if a.look = a.sparseLook(view); a.look == nil {
		a.from = matchEntries(a.prev.entries, a.m.Entries)
		view.index()
		a.actions = make([]action, len(a.m.Entries))
	} else {
		a.actions = make([]action, len(a.look))
	}
	*a.act(0) = action{kind: actKeep, onDisk: fi}
	stats := a.statAll(view)
	// Below a directory being created or replaced there is nothing yet;
	// what statAll saw there was seen through what is being replaced, and
	// is not used.
	fresh := make(map[string]bool)
	for i := range a.each(1) {
		e := &a.m.Entries[i]
		parent := parentPath(e.Path)
		if fresh[parent] {
			a.act(i).kind = actCreate
			a.act(i).inNew = true
			if e.Type == TypeDir {
				fresh[e.Path] = true
			}
			continue
		}
		if a.opts.SkipUnchanged {
			if j := a.prevAt(i); j >= 0 && sameEntry(&a.prev.entries[j], e) {
				// Trusted as the last Apply left it; onDisk stays nil.
				*a.act(i) = action{kind: actKeep, rec: a.prev.recs[j]}
				continue
			}
		}
		st := stats[a.slot(i)]
		fi, err := st.fi, st.err
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err != nil {
			fi = nil
		}
		var act action
		switch e.Type {
		case TypeDir:
			switch {
			case fi == nil:
				act.kind = actCreate
			case fi.IsDir():
				act.kind = actKeep
			default:
				act.kind = actReplace
			}
			if act.kind != actKeep {
				fresh[e.Path] = true
			}
		case TypeFile:
			act = a.fileAction(i, fi)
		case TypeSymlink:
			act.kind = actCreate
			if fi != nil {
				act.kind = actReplace
				if fi.Mode()&fs.ModeSymlink != 0 {
					if t, err := os.Readlink(a.abs(e.Path)); err == nil && t == e.Target {
						act.kind = actKeep
					}
				}
			}
		}
		act.onDisk = fi
		if act.kind == actReplace && fi.IsDir() {
			if err := a.checkOwnedTree(e.Path); err != nil {
				return err
			}
		}
		*a.act(i) = act
	}
	return nil
}

// statResult is what Lstat said of one entry's path.
type statResult struct {
	fi  fs.FileInfo
	err error
}

// statAll runs Lstat on the path of every entry the plan will look at,
// the files several at once: on a big tree, the re-sync of a node with
// many cores then costs a fraction of stat-ing its files one after
// another. Entries that SkipUnchanged trusts are not looked at, nor those
// a View knows, nor those below a directory that is not there.
func (a *applier) statAll(view *viewLookup) []statResult {
	out := make([]statResult, len(a.actions)) // by slot
	// Directories are looked at first, in order: below one that is not
	// there, or is no directory, nothing of the tree is (plan creates it
	// whole), and its entries are not looked at. A first sync into an
	// empty directory then stats no more than its top level.
	absent := make(map[string]bool)
	var todo []int
	for i := range a.each(1) {
		e, r := &a.m.Entries[i], &out[a.slot(i)]
		if len(absent) > 0 && absent[parentPath(e.Path)] {
			r.err = fs.ErrNotExist
			if e.Type == TypeDir {
				absent[e.Path] = true
			}
			continue
		}
		if a.opts.SkipUnchanged {
			if j := a.prevAt(i); j >= 0 && sameEntry(&a.prev.entries[j], e) {
				continue
			}
		}
		if fi, err, ok := view.lookup(i, e.Path); ok {
			*r = statResult{fi: fi, err: err}
		} else if e.Type == TypeDir {
			r.fi, r.err = os.Lstat(a.abs(e.Path))
		} else {
			todo = append(todo, i)
			continue
		}
		if e.Type == TypeDir && (r.err != nil || !r.fi.IsDir()) {
			absent[e.Path] = true
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo)/256+1)
	const batch = 128
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				start := int(next.Add(batch)) - batch
				if start >= len(todo) {
					return
				}
				for _, i := range todo[start:min(start+batch, len(todo))] {
					r := &out[a.slot(i)]
					r.fi, r.err = os.Lstat(a.abs(a.m.Entries[i].Path))
				}
			}
		})
	}
	wg.Wait()
	return out
}

// sameEntry reports whether two entries describe the same thing.
func sameEntry(a, b *Entry) bool {
	return a.Type == b.Type && a.Mode == b.Mode && a.MTime == b.MTime && a.Size == b.Size &&
		a.Target == b.Target && sameChunks(a.Chunks, b.Chunks)
}

// loadPrev takes the record of the last Apply, from ApplyOptions.Record
// or the state file.
func (a *applier) loadPrev() {
	if r := a.opts.Record; r != nil && r.state == a.state && r.st.dst == a.dst {
		a.prev = r.st
	} else {
		a.prev = loadState(a.state, a.dst)
	}
}

// matchEntries returns, for each entry of next, the index of the entry at
// its path in prev, or -1. Both are sorted.
func matchEntries(prev, next []Entry) []int {
	from := make([]int, len(next))
	j := 0
	for i := range next {
		for j < len(prev) && comparePaths(prev[j].Path, next[i].Path) < 0 {
			j++
		}
		from[i] = -1
		if j < len(prev) && prev[j].Path == next[i].Path {
			from[i] = j
		}
	}
	return from
}

// fileAction decides whether the file on disk (fi, nil if none) already
// holds entry i. A file recorded by the last Apply and unchanged since
// holds what was recorded; any other is judged by size and mtime, as rsync
// does.
func (a *applier) fileAction(i int, fi fs.FileInfo) action {
	e := &a.m.Entries[i]
	if fi == nil {
		return action{kind: actCreate}
	}
	if !fi.Mode().IsRegular() {
		return action{kind: actReplace, onDisk: fi}
	}
	_, ino, _ := fileIdentity(fi)
	mtime := fi.ModTime().UnixNano()
	if j := a.prevAt(i); j >= 0 && a.prev.entries[j].Type == TypeFile {
		if r := a.prev.recs[j]; r.ino == ino && r.size == fi.Size() && r.mtime == mtime {
			if sameChunks(a.prev.entries[j].Chunks, e.Chunks) {
				return action{kind: actKeep, onDisk: fi, rec: r}
			}
			return action{kind: actReplace, onDisk: fi}
		}
	}
	if fi.Size() == e.Size && mtime == e.MTime {
		return action{kind: actKeep, onDisk: fi, rec: fileRecord{ino: ino, size: fi.Size(), mtime: mtime}}
	}
	return action{kind: actReplace, onDisk: fi}
}

// checkOwnedTree makes sure the directory at rel, which a file or link of
// the source is to replace, holds only what the last Apply put there,
// unchanged; then deleting it loses nothing of the job's.
func (a *applier) checkOwnedTree(rel string) error {
	top := a.abs(rel)
	return filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == top {
			return nil
		}
		r, _ := filepath.Rel(a.work, p)
		r = filepath.ToSlash(r)
		j := a.prev.find(r)
		ok := j >= 0 && findEntry(a.m.Entries, r) < 0
		if ok && !d.IsDir() {
			fi, err := d.Info()
			ok = err == nil && a.ownedUnchanged(j, fi)
		} else if ok {
			ok = a.prev.entries[j].Type == TypeDir
		}
		if !ok {
			return fmt.Errorf("cannot put %s in place of directory %s: it holds %s, which sky-coord did not put there (or which was changed since); move it away and sync again", rel, rel, r)
		}
		return nil
	})
}

// ownedUnchanged reports whether the non-directory at the path of the
// last Apply's entry j is still as it left it.
func (a *applier) ownedUnchanged(j int, fi fs.FileInfo) bool {
	prev := &a.prev.entries[j]
	switch prev.Type {
	case TypeFile:
		r := a.prev.recs[j]
		_, ino, _ := fileIdentity(fi)
		return fi.Mode().IsRegular() && r.ino == ino && r.size == fi.Size() && r.mtime == fi.ModTime().UnixNano()
	case TypeSymlink:
		if fi.Mode()&fs.ModeSymlink == 0 {
			return false
		}
		t, err := os.Readlink(a.abs(prev.Path))
		return err == nil && t == prev.Target
	}
	return false
}
