package transfer

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"time"
)

// Layer is a tree Apply wrote that nothing has changed since, used as the
// lower layer of copy-on-write views (overlayfs): what a view shows of
// it is known from Apply's record, without looking.
type Layer struct {
	dir     string
	entries []Entry     // sorted, as in a manifest
	infos   []layerInfo // what Lstat would say, by entry
}

// LoadLayer reads Apply's record (stateFile) of the tree it wrote at dir.
// The caller vouches that the tree has not changed since, and may keep
// the Layer for as long as that holds.
func LoadLayer(dir, stateFile string) (*Layer, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	st := loadState(stateFile, abs)
	if len(st.entries) == 0 {
		return nil, fmt.Errorf("no record of the tree at %s in %s", dir, stateFile)
	}
	return newLayer(abs, st), nil
}

// LayerFrom is the Layer of the tree at dir when it holds exactly what
// rec records, file for file with the same inodes: the lower layer of a
// view AdoptCopy adopted, whose record it returned. It saves reading the
// lower layer's record again, and rec, whose every entry the layer holds,
// can be the base of a sparse apply in the view (ApplyOptions.Changes).
func LayerFrom(dir string, rec *Record) (*Layer, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	l := newLayer(abs, rec.st)
	rec.st.lowerOf, rec.st.notInLower = l, nil
	return l, nil
}

// newLayer is the Layer of the tree at abs that st records.
func newLayer(abs string, st *applyState) *Layer {
	l := &Layer{dir: abs, entries: st.entries, infos: make([]layerInfo, len(st.entries))}
	for i := range l.entries {
		l.infos[i] = layerInfo{e: &l.entries[i], rec: st.recs[i]}
	}
	return l
}

// View says that Apply's destination is a copy-on-write view with Lower
// below it.
type View struct {
	Lower *Layer
	// Upper lists the paths the view's own (upper) layer holds, and
	// Hiding those of them that hide what Lower has below them: files,
	// deletions, and directories that are opaque or redirected. Paths
	// in Upper or below one in Hiding are looked at; every other path
	// shows what Lower holds there, as recorded. Any order; RootPath in
	// Hiding hides all of Lower.
	Upper, Hiding []string
}

// viewLookup answers, for the entries of one manifest, what Lstat would
// say in a view.
type viewLookup struct {
	v *View
	m *Manifest
	// changedIdx: the entries the upper layer holds or hides, sorted.
	changedIdx []int
	// By entry, once indexed (for lookups of every entry): its index in
	// v.Lower or -1, and whether it is in changedIdx. Without them, each
	// lookup searches.
	lower   []int
	changed []bool
}

// lookupIn prepares lookups of m's entries in v (nil without a view). The
// entries the upper layer holds are found by binary search, and those
// below a path it hides are a run of entries after it: the cost is in the
// size of the upper layer, not in that of the tree.
func (v *View) lookupIn(m *Manifest) *viewLookup {
	if v == nil {
		return nil
	}
	l := &viewLookup{v: v, m: m}
	for _, u := range v.Upper {
		if i := findEntry(m.Entries, u); i >= 0 {
			l.changedIdx = append(l.changedIdx, i)
		}
	}
	for _, h := range v.Hiding {
		lo, hi := below(m.Entries, h)
		for i := lo; i < hi; i++ {
			l.changedIdx = append(l.changedIdx, i)
		}
	}
	slices.Sort(l.changedIdx)
	l.changedIdx = slices.Compact(l.changedIdx)
	return l
}

// index prepares lookups of every entry, which then need no search.
func (l *viewLookup) index() {
	if l == nil {
		return
	}
	l.lower = matchEntries(l.v.Lower.entries, l.m.Entries)
	l.changed = make([]bool, len(l.m.Entries))
	for _, i := range l.changedIdx {
		l.changed[i] = true
	}
}

// lookup says what Lstat of entry i (path rel) in the view would say,
// when the view shows Lower there; ok is false when the path must be
// looked at.
func (l *viewLookup) lookup(i int, rel string) (fi fs.FileInfo, err error, ok bool) {
	if l == nil || rel == RootPath {
		return nil, nil, false
	}
	j := -1
	if l.changed != nil {
		if l.changed[i] {
			return nil, nil, false
		}
		j = l.lower[i]
	} else {
		if _, found := slices.BinarySearch(l.changedIdx, i); found {
			return nil, nil, false
		}
		j = findEntry(l.v.Lower.entries, rel)
	}
	if j >= 0 {
		return &l.v.Lower.infos[j], nil, true
	}
	return nil, fs.ErrNotExist, true
}

// layerInfo is the fs.FileInfo of a Layer's entry.
type layerInfo struct {
	e   *Entry
	rec fileRecord // files: as recorded after the write
}

func (i *layerInfo) Name() string { return filepath.Base(filepath.FromSlash(i.e.Path)) }

func (i *layerInfo) Size() int64 {
	if i.e.Type == TypeSymlink {
		return int64(len(i.e.Target))
	}
	return i.e.Size
}

func (i *layerInfo) Mode() fs.FileMode { return i.e.FileMode() }

func (i *layerInfo) ModTime() time.Time {
	if i.e.Type == TypeFile {
		return time.Unix(0, i.rec.mtime)
	}
	return time.Unix(0, i.e.MTime)
}

func (i *layerInfo) IsDir() bool { return i.e.Type == TypeDir }
func (i *layerInfo) Sys() any    { return nil }

// fileIdentity returns what, beside size and mtime, tells whether a file
// may have changed: its device, inode and change time; for a Layer's
// file, the inode recorded.
func fileIdentity(fi fs.FileInfo) (dev, ino uint64, ctime int64) {
	if i, ok := fi.(*layerInfo); ok {
		return 0, i.rec.ino, 0
	}
	return sysIdentity(fi)
}
