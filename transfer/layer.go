package transfer

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"time"
)

// Layer is a tree Apply wrote that nothing has changed since, used as the
// lower layer of copy-on-write views (overlayfs): what a view shows of
// it is known from Apply's record, without looking.
type Layer struct {
	dir   string
	infos map[string]*layerInfo // what Lstat would say, by path
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
	l := &Layer{dir: abs, infos: make(map[string]*layerInfo, len(st.entries))}
	infos := make([]layerInfo, len(st.entries))
	for i := range st.entries {
		e := &st.entries[i]
		infos[i].e = e
		if e.Type == TypeFile {
			infos[i].rec = st.recs[i]
		}
		l.infos[e.Path] = &infos[i]
	}
	return l, nil
}

// View says that Apply's destination is a copy-on-write view with Lower
// below it.
type View struct {
	Lower *Layer
	// Changed reports whether the view's own (upper) layer may hold the
	// path, or something that hides it: a deletion, or a directory that
	// hides Lower's below it. Paths it reports are looked at; every
	// other path shows what Lower holds there, as recorded.
	Changed func(rel string) bool
}

// lookup says what Lstat of rel in the view would say, when the view
// shows Lower there; ok is false when the path must be looked at.
func (v *View) lookup(rel string) (fi fs.FileInfo, err error, ok bool) {
	if v == nil || rel == RootPath || v.Changed(rel) {
		return nil, nil, false
	}
	if info := v.Lower.infos[rel]; info != nil {
		return info, nil, true
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
