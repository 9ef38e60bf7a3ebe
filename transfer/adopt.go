package transfer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Adopt records that the directory dst holds the tree m describes,
// exactly as Apply would have left it, though it came another way (a
// copy-on-write view of a copy Apply wrote elsewhere). It checks every
// entry first: type, and for files size, mode and mtime; for links their
// target. From then on dst is synced like any directory Apply wrote:
// what Adopt recorded is sky-coord's to update or remove, what a job
// changes there is the job's.
//
// It returns the record of dst, for the next Apply there
// (ApplyOptions.Record).
func Adopt(m *Manifest, dst string, opts ApplyOptions) (*Record, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("adopt %s: %w", dst, err)
	}
	if m.Entries[0].Type != TypeDir {
		return nil, fmt.Errorf("adopt %s: only a directory tree can be adopted", dst)
	}
	abs, err := filepath.Abs(dst)
	if err != nil {
		return nil, fmt.Errorf("adopt %s: %w", dst, err)
	}
	a := &applier{m: m, dst: abs, work: abs, opts: opts, state: opts.StateFile}
	if a.state == "" {
		a.state = DefaultStateFile(abs)
	}
	a.actions = make([]action, len(m.Entries))
	for i := range m.Entries {
		e := &m.Entries[i]
		fi, err := os.Lstat(a.abs(e.Path))
		if err != nil {
			return nil, fmt.Errorf("adopt %s: %w", dst, err)
		}
		switch e.Type {
		case TypeDir:
			if !fi.IsDir() {
				return nil, fmt.Errorf("adopt %s: %s is not a directory", dst, e.Path)
			}
		case TypeSymlink:
			t, err := os.Readlink(a.abs(e.Path))
			if err != nil || t != e.Target {
				return nil, fmt.Errorf("adopt %s: %s is not the link the source has", dst, e.Path)
			}
		case TypeFile:
			if !fi.Mode().IsRegular() || fi.Size() != e.Size || fi.ModTime().UnixNano() != e.MTime || unixMode(fi.Mode()) != e.Mode {
				return nil, fmt.Errorf("adopt %s: %s differs from the source", dst, e.Path)
			}
			_, ino, _ := fileIdentity(fi)
			a.act(i).rec = fileRecord{ino: ino, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
		default:
			return nil, errors.New("adopt: unknown entry type")
		}
	}
	if err := a.saveState(); err != nil {
		return nil, err
	}
	return &Record{st: a.next, state: a.state}, nil
}

// AdoptCopy is Adopt for a dst that shows the directory src, where Apply
// wrote m, file for file with the same inodes (an overlayfs view with src
// as its only lower layer, on src's filesystem): it takes Apply's record
// of src (srcState) instead of looking at every entry. When that record
// is missing or is not of m, it falls back to Adopt. Should the inodes
// differ after all, the next sync judges files by size and mtime, and
// keeps those that left the source rather than deleting them.
func AdoptCopy(m *Manifest, dst, src, srcState string, opts ApplyOptions) (*Record, error) {
	absSrc, err := filepath.Abs(src)
	if err != nil {
		return Adopt(m, dst, opts)
	}
	st := loadState(srcState, absSrc)
	if len(st.entries) != len(m.Entries) {
		return Adopt(m, dst, opts)
	}
	for i := range m.Entries {
		if st.entries[i].Path != m.Entries[i].Path || !sameEntry(&st.entries[i], &m.Entries[i]) {
			return Adopt(m, dst, opts)
		}
	}
	abs, err := filepath.Abs(dst)
	if err != nil {
		return nil, fmt.Errorf("adopt %s: %w", dst, err)
	}
	state := opts.StateFile
	if state == "" {
		state = DefaultStateFile(abs)
	}
	st.dst = abs
	if err := st.save(state); err != nil {
		return nil, err
	}
	return &Record{st: st, state: state}, nil
}
