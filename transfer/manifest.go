package transfer

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"unicode/utf8"
)

// ManifestVersion is the format version a Manifest is written with.
const ManifestVersion = 1

// EntryType is the kind of a manifest entry.
type EntryType string

// The entry types.
const (
	TypeDir     EntryType = "dir"
	TypeFile    EntryType = "file"
	TypeSymlink EntryType = "symlink"
)

// RootPath is the path of the entry that describes the root itself: the
// directory a tree was built from, or the one file of a file manifest.
const RootPath = "."

// Manifest describes a tree: every directory, regular file and symbolic
// link below the root that the ignore rules keep, plus the root itself.
// Entries are sorted by path (the root first, then byte order, so every
// directory comes before what it holds). Owners are not kept.
type Manifest struct {
	Version int     `json:"version"`
	Entries []Entry `json:"entries"`
}

// Entry is one directory, file or symbolic link of a manifest.
type Entry struct {
	// Path is "/"-separated and relative to the root; RootPath for the
	// root itself.
	Path string    `json:"path"`
	Type EntryType `json:"type"`
	// Mode holds the permission bits and the setuid, setgid and sticky
	// bits in their Unix positions (0o7777); 0 for a symbolic link.
	Mode uint32 `json:"mode"`
	// MTime is the modification time, Unix nanoseconds; 0 for a symbolic
	// link.
	MTime int64 `json:"mtime,omitempty"`
	// Size is the length of a file: the sum of its chunks' sizes.
	Size int64 `json:"size,omitempty"`
	// Chunks are a file's chunks, in order; none for an empty file.
	Chunks []ChunkRef `json:"chunks,omitempty"`
	// Target is a symbolic link's target, as it was read.
	Target string `json:"target,omitempty"`
}

// FileMode returns the entry's type and mode as an fs.FileMode.
func (e *Entry) FileMode() fs.FileMode {
	m := fs.FileMode(e.Mode & 0o777)
	if e.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch e.Type {
	case TypeDir:
		m |= fs.ModeDir
	case TypeSymlink:
		m |= fs.ModeSymlink
	}
	return m
}

// unixMode is the inverse of Entry.FileMode for the mode bits.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// sameChunks reports whether two chunk lists are equal.
func sameChunks(a, b []ChunkRef) bool {
	return slices.Equal(a, b)
}

// comparePaths orders manifest paths: the root first, then byte order.
func comparePaths(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == RootPath:
		return -1
	case b == RootPath:
		return 1
	}
	return strings.Compare(a, b)
}

// Root returns the root entry.
func (m *Manifest) Root() *Entry {
	if len(m.Entries) == 0 || m.Entries[0].Path != RootPath {
		return nil
	}
	return &m.Entries[0]
}

// Chunks returns the distinct chunks the manifest's files refer to, in the
// order they first appear.
func (m *Manifest) Chunks() []ChunkRef {
	seen := make(map[ChunkID]bool)
	var refs []ChunkRef
	for i := range m.Entries {
		for _, c := range m.Entries[i].Chunks {
			if !seen[c.ID] {
				seen[c.ID] = true
				refs = append(refs, c)
			}
		}
	}
	return refs
}

// Totals returns the number of regular files and their bytes.
func (m *Manifest) Totals() (files int, bytes int64) {
	for i := range m.Entries {
		if m.Entries[i].Type == TypeFile {
			files++
			bytes += m.Entries[i].Size
		}
	}
	return files, bytes
}

// Encode returns the manifest's canonical encoding (binary, described in
// codec.go): the same manifest always encodes to the same bytes.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return encodeManifest(m), nil
}

// ID returns the id of the manifest's encoding, which is also the name it
// is stored under in a ChunkStore.
func (m *Manifest) ID() (ChunkID, error) {
	if err := m.Validate(); err != nil {
		return ChunkID{}, err
	}
	return hashManifest(m), nil
}

// ErrBadManifest is wrapped by every error DecodeManifest and
// Manifest.Validate return for a manifest that breaks the format.
var ErrBadManifest = errors.New("bad manifest")

// DecodeManifest reads and validates an encoded manifest.
func DecodeManifest(data []byte) (Manifest, error) {
	m, err := decodeManifest(data)
	if err != nil {
		return Manifest{}, err
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// maxFileSize bounds a file's size so that sums cannot overflow.
const maxFileSize = 1 << 50

// Validate checks what Apply relies on: a known version, a root entry
// first, paths clean, relative, sorted and unique, every parent a
// directory entry (so no path goes through a symbolic link), types known,
// file sizes equal to the sum of their chunks, link targets present.
func (m *Manifest) Validate() error {
	if m.Version != ManifestVersion {
		return badManifest("version %d, this program reads version %d (update sky-coord on both sides)", m.Version, ManifestVersion)
	}
	if len(m.Entries) == 0 || m.Entries[0].Path != RootPath {
		return badManifest("first entry must be the root %q", RootPath)
	}
	dirs := make(map[string]bool)
	lastParent := "" // the last parent found in dirs: most entries share it
	for i := range m.Entries {
		e := &m.Entries[i]
		if i > 0 {
			if err := checkPath(e.Path); err != nil {
				return badManifest("entry %d: %v", i, err)
			}
			if comparePaths(m.Entries[i-1].Path, e.Path) >= 0 {
				return badManifest("entry %q: paths not sorted or not unique", e.Path)
			}
			parent := parentPath(e.Path)
			if parent != lastParent && !dirs[parent] {
				return badManifest("entry %q: parent %q is not a directory entry", e.Path, parent)
			}
			lastParent = parent
		}
		if err := checkEntry(e, i == 0, len(m.Entries)); err != nil {
			return err
		}
		if e.Type == TypeDir {
			dirs[e.Path] = true
		}
	}
	return nil
}

func badManifest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadManifest, fmt.Sprintf(format, args...))
}

// checkEntry checks what Validate checks of one entry by itself: its
// mode, type and what the type allows. root says it is the first entry
// of n; its path is checked apart.
func checkEntry(e *Entry, root bool, n int) error {
	if e.Mode&^0o7777 != 0 {
		return badManifest("entry %q: mode %o has bits beyond 07777", e.Path, e.Mode)
	}
	switch e.Type {
	case TypeDir:
		if e.Size != 0 || len(e.Chunks) > 0 || e.Target != "" {
			return badManifest("directory %q has a size, chunks or a target", e.Path)
		}
	case TypeFile:
		if e.Target != "" {
			return badManifest("file %q has a link target", e.Path)
		}
		if e.Size < 0 || e.Size > maxFileSize {
			return badManifest("file %q: size %d out of range", e.Path, e.Size)
		}
		var sum int64
		for _, c := range e.Chunks {
			if c.Size <= 0 || c.Size > maxFileSize {
				return badManifest("file %q: chunk %s has size %d", e.Path, c.ID, c.Size)
			}
			sum += c.Size
		}
		if sum != e.Size {
			return badManifest("file %q: size %d but its chunks hold %d bytes", e.Path, e.Size, sum)
		}
		if root && n > 1 {
			return badManifest("a file root cannot have entries below it")
		}
	case TypeSymlink:
		if root {
			return badManifest("the root cannot be a symbolic link")
		}
		if e.Target == "" || strings.IndexByte(e.Target, 0) >= 0 || !utf8.ValidString(e.Target) {
			return badManifest("symbolic link %q: target empty, not valid UTF-8 or holding a NUL byte", e.Path)
		}
		if e.Size != 0 || len(e.Chunks) > 0 || e.Mode != 0 || e.MTime != 0 {
			return badManifest("symbolic link %q has a size, chunks, mode or time", e.Path)
		}
	default:
		return badManifest("entry %q: unknown type %q", e.Path, e.Type)
	}
	return nil
}

// checkPath accepts a clean, relative, "/"-separated path of names other
// than "." and "..".
func checkPath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if p[i] == 0 {
				return fmt.Errorf("path %q is not valid UTF-8 or holds a NUL byte", p)
			}
			continue
		}
		switch name := p[start:i]; name {
		case "":
			return fmt.Errorf("path %q is absolute or has an empty element", p)
		case ".", "..":
			return fmt.Errorf("path %q has a %q element", p, name)
		}
		start = i + 1
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("path %q is not valid UTF-8 or holds a NUL byte", p)
	}
	return nil
}
