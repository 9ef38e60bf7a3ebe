package transfer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ErrRescan is returned by Rebuild when the changed paths alone cannot
// bring a description up to date (an ignore file changed, say): the caller
// builds it afresh with BuildManifest.
var ErrRescan = errors.New("the tree must be scanned again")

// A Snapshot is what a client keeps of its last description of a
// directory tree, so that the next one can be built from a file watcher's
// list of changed paths (Rebuild) instead of a stat of every file.
type Snapshot struct {
	// Token is the watcher's token from before the description was built:
	// every change after it is in the watcher's next answer.
	Token    string
	Root     string // absolute, symbolic links resolved
	Manifest Manifest
	// exclude is the stamp of .git/info/exclude, which no watcher reports
	// (.git is never watched), taken before the build.
	exclude stamp
	encoded []byte // Manifest's encoding, when known
}

// stamp tells whether a small file changed: what its stat says, or that
// it was not there.
type stamp struct {
	present bool
	fileStat
}

func stampOf(file string) stamp {
	fi, err := os.Lstat(file)
	if err != nil {
		return stamp{}
	}
	return stamp{present: true, fileStat: statOf(fi)}
}

// Snapshot returns what Rebuild needs to describe the tree again after
// the changes a watcher reports after token.
func (t *Tree) Snapshot(token string) *Snapshot {
	return &Snapshot{Token: token, Root: t.root, Manifest: t.Manifest, exclude: t.exclude, encoded: t.encoded}
}

// ManifestID returns the id of the snapshot's manifest.
func (s *Snapshot) ManifestID() (ChunkID, error) {
	if s.encoded != nil {
		return HashChunk(s.encoded), nil
	}
	return s.Manifest.ID()
}

// snapshotMagic starts a saved Snapshot: magic, token, root, the exclude
// stamp (a presence byte and five varints), then the manifest's encoding.
const snapshotMagic = "SKYSNAP1\n"

// Save writes the snapshot to file (mode 0600), atomically.
func (s *Snapshot) Save(file string) error {
	data := s.encoded
	if data == nil {
		var err error
		if data, err = s.Manifest.Encode(); err != nil {
			return err
		}
	}
	b := make([]byte, 0, len(snapshotMagic)+len(s.Token)+len(s.Root)+64+len(data))
	b = append(b, snapshotMagic...)
	b = binary.AppendUvarint(b, uint64(len(s.Token)))
	b = append(b, s.Token...)
	b = binary.AppendUvarint(b, uint64(len(s.Root)))
	b = append(b, s.Root...)
	x := s.exclude
	present := byte(0)
	if x.present {
		present = 1
	}
	b = appendFileStat(append(b, present), x.fileStat)
	b = append(b, data...)
	if err := writeFileAtomic(file, b, 0o600); err != nil {
		return fmt.Errorf("save the tree snapshot: %w", err)
	}
	return nil
}

// LoadSnapshot reads the snapshot saved at file for root. A missing,
// damaged or foreign one gives nil: it only costs a full scan.
func LoadSnapshot(file, root string) *Snapshot {
	data, err := os.ReadFile(file)
	if err != nil || len(data) < len(snapshotMagic) || string(data[:len(snapshotMagic)]) != snapshotMagic {
		return nil
	}
	d := &decoder{data: data[len(snapshotMagic):]}
	s := &Snapshot{Token: string(d.bytes(d.uvarint())), Root: string(d.bytes(d.uvarint()))}
	present := d.bytes(1)
	s.exclude.present = len(present) == 1 && present[0] == 1
	s.exclude.fileStat = d.fileStat()
	if d.err != nil || s.Root != root {
		return nil
	}
	if s.Manifest, err = DecodeManifest(d.data); err != nil {
		return nil
	}
	s.encoded = d.data
	if r := s.Manifest.Root(); r == nil || r.Type != TypeDir {
		return nil
	}
	return s
}

// Rebuild describes the tree of s again, as BuildManifest would, from
// s's description and changed: the paths below s.Root that may differ
// since s was built ("/"-separated, RootPath for the root itself), as a
// file watcher reports them. Only those are looked at (and a directory
// that was not one before is walked whole), so the cost follows the size
// of the change, not of the tree. It returns ErrRescan when that cannot
// be done: the root is no longer a directory, or an ignore file changed.
// opts.Cache keeps what it remembers of the files not looked at. s is
// spent: the result may reuse its manifest's entries.
func Rebuild(ctx context.Context, s *Snapshot, changed []string, opts BuildOptions) (*Tree, error) {
	fi, err := os.Lstat(s.Root)
	if err != nil || !fi.IsDir() {
		return nil, ErrRescan
	}
	prev := s.Manifest.Entries
	if len(prev) == 0 || prev[0].Path != RootPath || prev[0].Type != TypeDir {
		return nil, ErrRescan
	}
	t := &Tree{root: s.Root, Manifest: Manifest{Version: ManifestVersion},
		exclude: stampOf(filepath.Join(s.Root, filepath.FromSlash(gitExclude)))}
	if t.exclude != s.exclude {
		return nil, ErrRescan
	}
	if opts.Cache != nil {
		opts.Cache.resume(time.Now())
	}
	r := &rebuild{t: t, prev: prev, dirs: map[string]dirRules{}, looked: map[string]bool{}}
	r.w = &walker{ctx: ctx, root: s.Root, visit: r.add}
	base, err := r.w.rootRules()
	if err != nil {
		return nil, err
	}
	r.base = base
	paths := slices.Clone(changed)
	slices.SortFunc(paths, comparePaths)
	for _, p := range slices.Compact(paths) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := r.look(p); err != nil {
			return nil, err
		}
	}
	return r.finish(ctx, opts)
}

// rebuild is the work of one Rebuild.
type rebuild struct {
	t       *Tree
	prev    []Entry
	w       *walker
	base    ignoreRules         // the rules that apply everywhere (.git/info/exclude)
	dirs    map[string]dirRules // by directory, "" for the root
	looked  map[string]bool     // the changed paths looked at
	gone    []string            // paths of prev removed, with what is below them
	entries []Entry             // entries described again, in no order
	infos   []fs.FileInfo       // per entry, for the files
}

// dirRules are the ignore rules that apply to a directory's entries, or
// that a walk finds nothing there (the directory is ignored, below an
// ignored one, or not a directory).
type dirRules struct {
	rules   ignoreRules
	skipped bool
}

// rulesIn returns the ignore rules for the entries of directory dir ("" is
// the root), as a walk from the root would have them there.
func (r *rebuild) rulesIn(dir string) (dirRules, error) {
	if dr, ok := r.dirs[dir]; ok {
		return dr, nil
	}
	rules := r.base
	if dir != "" {
		parent, err := r.rulesIn(parentOf(dir))
		if err != nil || parent.skipped {
			return parent, err
		}
		// Not a directory (a link to one, say): a walk finds nothing
		// below it.
		fi, err := os.Lstat(r.abs(dir))
		if err != nil || !fi.IsDir() || (len(parent.rules) > 0 && parent.rules.ignored(dir, true)) {
			r.dirs[dir] = dirRules{skipped: true}
			return r.dirs[dir], nil
		}
		rules = parent.rules
	}
	more, err := readIgnoreFile(filepath.Join(r.abs(dir), r.w.ignoreFile), dir, path.Join(dir, r.w.ignoreFile))
	if err != nil {
		return dirRules{}, err
	}
	if len(more) > 0 {
		rules = append(rules[:len(rules):len(rules)], more...)
	}
	r.dirs[dir] = dirRules{rules: rules}
	return r.dirs[dir], nil
}

// parentOf is the directory holding p, "" for an entry of the root.
func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func (r *rebuild) abs(rel string) string {
	if rel == "" || rel == RootPath {
		return r.t.root
	}
	return r.t.root + string(filepath.Separator) + filepath.FromSlash(rel)
}

// wasDir reports whether prev held p as a directory.
func (r *rebuild) wasDir(p string) bool {
	i := findEntry(r.prev, p)
	return i >= 0 && r.prev[i].Type == TypeDir
}

// look describes the changed path p again.
func (r *rebuild) look(p string) error {
	if p == "" || p == RootPath {
		fi, err := os.Lstat(r.t.root)
		if err != nil {
			return fmt.Errorf("scan %s: %w", r.t.root, err)
		}
		r.entries = append(r.entries, Entry{Path: RootPath, Type: TypeDir, Mode: unixMode(fi.Mode()), MTime: fi.ModTime().UnixNano()})
		r.infos = append(r.infos, nil)
		return nil
	}
	if r.looked[p] || checkPath(p) != nil || slices.Contains(strings.Split(p, "/"), gitDir) {
		return nil // done, never synced, or not a path a walk gives
	}
	r.looked[p] = true
	dir := parentOf(p)
	if name := p[len(p)-len(path.Base(p)):]; name == GitIgnoreFile || name == SkyIgnoreFile {
		if fi, err := os.Lstat(r.abs(dir)); err == nil && fi.IsDir() && (dir == "" || r.wasDir(dir)) {
			return ErrRescan // the rules of what is there already changed
		}
	}
	if dir != "" && !r.wasDir(dir) {
		// Its directory is new too: that is walked whole, p with it.
		return r.look(dir)
	}
	dr, err := r.rulesIn(dir)
	if err != nil {
		return err
	}
	if dr.skipped {
		r.gone = append(r.gone, p) // not described before either
		return nil
	}
	fi, err := os.Lstat(r.abs(p))
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		r.gone = append(r.gone, p)
		return nil
	default:
		return fmt.Errorf("stat %s: %w", p, err)
	}
	if len(dr.rules) > 0 && dr.rules.ignored(p, fi.IsDir()) {
		r.gone = append(r.gone, p)
		return nil
	}
	wasDir := r.wasDir(p)
	if wasDir && !fi.IsDir() {
		r.gone = append(r.gone, p) // what was below it; p itself is described below
	}
	if err := r.add(p, fi); err != nil {
		return err
	}
	switch {
	case fi.IsDir() && !wasDir:
		// New here: what it holds may not be among the changed paths
		// (it may have been created before the watcher saw the
		// directory), so it is walked whole.
		return r.w.walk(p, dr.rules)
	case fi.IsDir():
		return r.relist(p)
	}
	return nil
}

// relist compares the entries of directory p, which was one before too,
// with what prev holds below it: one removed or renamed away with all it
// held may be named by a watcher only through p, and so may one that
// took another's place. Those on one side only are looked at.
func (r *rebuild) relist(p string) error {
	dirents, err := os.ReadDir(r.abs(p))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil // gone since: its own event comes next time
		}
		return fmt.Errorf("read directory %s: %w", p, err)
	}
	prefix := ""
	if p != RootPath {
		prefix = p + "/"
	}
	onDisk := make(map[string]bool, len(dirents))
	for _, de := range dirents {
		onDisk[prefix+de.Name()] = true
	}
	var look []string
	lo, hi := below(r.prev, p)
	for _, e := range r.prev[lo:hi] {
		c := e.Path
		if strings.IndexByte(c[len(prefix):], '/') >= 0 {
			continue // deeper
		}
		if onDisk[c] {
			delete(onDisk, c) // on both sides
		} else {
			look = append(look, c)
		}
	}
	for c := range onDisk {
		look = append(look, c)
	}
	slices.SortFunc(look, comparePaths)
	for _, c := range look {
		if err := r.look(c); err != nil {
			return err
		}
	}
	return nil
}

// add describes one entry, as BuildManifest's walk does.
func (r *rebuild) add(rel string, fi fs.FileInfo) error {
	e, ok, err := r.t.describe(rel, fi)
	if err != nil || !ok {
		if err == nil {
			r.gone = append(r.gone, rel)
		}
		return err
	}
	r.entries = append(r.entries, e)
	if e.Type == TypeFile {
		r.infos = append(r.infos, fi)
	} else {
		r.infos = append(r.infos, nil)
	}
	return nil
}

// finish hashes the files described again and merges them into prev.
func (r *rebuild) finish(ctx context.Context, opts BuildOptions) (*Tree, error) {
	t := r.t
	// In path order, the last description of a path winning (a path
	// both changed and below a new directory is described twice).
	order := make([]int, len(r.entries))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return comparePaths(r.entries[a].Path, r.entries[b].Path) })
	var infos []fs.FileInfo
	for k, i := range order {
		if k+1 < len(order) && r.entries[order[k+1]].Path == r.entries[i].Path {
			continue
		}
		t.Manifest.Entries = append(t.Manifest.Entries, r.entries[i])
		infos = append(infos, r.infos[i])
	}
	if err := t.hashFiles(ctx, infos, opts); err != nil {
		return nil, fmt.Errorf("scan %s: %w", t.root, err)
	}
	read, readSize := t.Stats.Read, t.Stats.ReadSize
	changed := t.Manifest.Entries
	// What differs from the last manifest: the entries described again
	// that are not as they were, and the paths removed.
	t.change = &Delta{}
	for k := range changed {
		if j := findEntry(r.prev, changed[k].Path); j < 0 || !sameEntry(&r.prev[j], &changed[k]) {
			t.change.Changed = append(t.change.Changed, changed[k])
		}
	}
	if at, ok := r.inPlace(changed); ok {
		// The same paths, no directory come or gone: the last manifest
		// with these entries replaced, which keeps it valid.
		for k, i := range at {
			r.prev[i] = changed[k]
		}
		t.Manifest = Manifest{Version: ManifestVersion, Entries: r.prev}
		t.recent = at
	} else {
		t.change.Removed = r.removed()
		d := Delta{Removed: t.change.Removed, Changed: changed}
		m, err := d.Apply(r.prev)
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", t.root, err)
		}
		t.Manifest = m
		for _, e := range changed {
			t.recent = append(t.recent, findEntry(m.Entries, e.Path))
		}
		// A path removed and described again (a file become a directory)
		// is only changed.
		t.change.Removed = slices.DeleteFunc(slices.Clone(t.change.Removed), func(p string) bool { return findEntry(m.Entries, p) >= 0 })
	}
	t.Stats = BuildStats{Read: read, ReadSize: readSize}
	for i := range t.Manifest.Entries {
		switch e := &t.Manifest.Entries[i]; e.Type {
		case TypeDir:
			t.Stats.Dirs++
		case TypeSymlink:
			t.Stats.Symlinks++
		case TypeFile:
			t.Stats.Files++
			t.Stats.Bytes += e.Size
		}
	}
	if opts.Cache != nil {
		opts.Cache.forget(r.gone)
	}
	return t, nil
}

// inPlace returns where in prev each of changed (sorted) is, when every one
// is there and a directory exactly where prev has one, and nothing is
// removed: then the new manifest is prev with those entries replaced.
func (r *rebuild) inPlace(changed []Entry) ([]int, bool) {
	for _, g := range r.gone {
		if findEntry(r.prev, g) >= 0 || r.wasDir(g) {
			return nil, false
		}
		if lo, hi := below(r.prev, g); lo < hi {
			return nil, false
		}
	}
	at := make([]int, len(changed))
	for k := range changed {
		i := findEntry(r.prev, changed[k].Path)
		if i < 0 || (r.prev[i].Type == TypeDir) != (changed[k].Type == TypeDir) {
			return nil, false
		}
		at[k] = i
	}
	return at, true
}

// removed lists, sorted, the paths of prev that gone names and those below
// them.
func (r *rebuild) removed() []string {
	var out []string
	for _, g := range r.gone {
		if i := findEntry(r.prev, g); i >= 0 {
			out = append(out, g)
		}
		lo, hi := below(r.prev, g)
		for _, e := range r.prev[lo:hi] {
			out = append(out, e.Path)
		}
	}
	slices.SortFunc(out, comparePaths)
	return slices.Compact(out)
}
