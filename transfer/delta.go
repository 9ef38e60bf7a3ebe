package transfer

import (
	"fmt"
	"slices"
)

// Delta is what changed from one manifest of a tree to the next: a node
// that holds the first (Base) builds the second (Result) from it and the
// delta, which for a change of one file is a few hundred bytes, instead
// of fetching and reading the whole manifest again.
type Delta struct {
	Base, Result ChunkID
	Removed      []string // paths of Base that Result lacks, sorted
	Changed      []Entry  // entries of Result that Base lacks or has otherwise, sorted
}

// deltaMagic starts an encoded Delta:
//
//	magic, Base (32 bytes), Result (32 bytes), the removed paths (uvarint
//	count, then uvarint length + bytes each), the changed entries (an
//	entry list, as in a manifest).
const deltaMagic = "SKYDELTA1\n"

// Diff returns the delta from base (id baseID) to next (id nextID).
func Diff(base *Manifest, baseID ChunkID, next *Manifest, nextID ChunkID) Delta {
	d := Delta{Base: baseID, Result: nextID}
	from := matchEntries(base.Entries, next.Entries)
	matched := make([]bool, len(base.Entries))
	for i, j := range from {
		if j >= 0 {
			matched[j] = true
			if sameEntry(&base.Entries[j], &next.Entries[i]) {
				continue
			}
		}
		d.Changed = append(d.Changed, next.Entries[i])
	}
	for j := range base.Entries {
		if !matched[j] {
			d.Removed = append(d.Removed, base.Entries[j].Path)
		}
	}
	return d
}

// Encode returns the delta's encoding (see deltaMagic).
func (d *Delta) Encode() []byte {
	b := append([]byte(deltaMagic), d.Base[:]...)
	b = append(b, d.Result[:]...)
	b = appendPaths(b, d.Removed)
	return appendEntries(b, d.Changed)
}

// DecodeDelta reads an encoded Delta. What it describes is checked when
// it is applied.
func DecodeDelta(data []byte) (Delta, error) {
	if len(data) < len(deltaMagic)+64 || string(data[:len(deltaMagic)]) != deltaMagic {
		return Delta{}, fmt.Errorf("%w: not a sky-coord manifest delta", ErrBadManifest)
	}
	var d Delta
	data = data[len(deltaMagic):]
	copy(d.Base[:], data[:32])
	copy(d.Result[:], data[32:64])
	dec := &decoder{data: data[64:]}
	d.Removed = dec.paths()
	d.Changed = dec.entries()
	if dec.err == nil && len(dec.data) > 0 {
		dec.fail("%d bytes after the delta's last entry", len(dec.data))
	}
	if dec.err != nil {
		return Delta{}, dec.err
	}
	return d, nil
}

// Apply returns the manifest the delta leads to from base, the entries of
// the manifest Base: a valid manifest's, as a Record holds them
// (Record.Entries). The result is validated as a decoded manifest is,
// but only where the delta touches it: its cost is in the size of the
// change. It shares base's entries.
func (d *Delta) Apply(base []Entry) (Manifest, error) {
	return d.ApplyInto(base, nil)
}

// ApplyInto is Apply building the result in buf's memory when it has room
// (a caller re-syncing again and again reuses the entries of a manifest
// it is done with): a fresh result costs more than the copy, in page
// faults and clearing. buf must not be base, nor be used elsewhere.
func (d *Delta) ApplyInto(base, buf []Entry) (Manifest, error) {
	if !slices.IsSortedFunc(d.Removed, comparePaths) || !pathsAscend(d.Changed) {
		return Manifest{}, fmt.Errorf("%w: delta's paths are not sorted", ErrBadManifest)
	}
	n := len(base) + len(d.Changed)
	if cap(buf) < n {
		buf = make([]Entry, 0, n)
	}
	var entries []Entry
	mergeRuns(base, d.Removed, d.Changed, func(lo, hi int) {
		entries = append(buf[:len(entries)], base[lo:hi]...)
	}, func(c int) {
		entries = append(buf[:len(entries)], d.Changed[c])
	})
	clear(buf[len(entries):cap(buf)]) // what else it held is not kept alive
	m := Manifest{Version: ManifestVersion, Entries: entries}
	if err := d.validate(entries); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// validate checks what Manifest.Validate would of entries, the result of
// the delta on a valid base: merging keeps the paths sorted and unique,
// so what is left to check is the changed entries themselves, that each
// has a directory for a parent, and that nothing is left below a path
// removed or no longer a directory.
func (d *Delta) validate(entries []Entry) error {
	if len(entries) == 0 || entries[0].Path != RootPath {
		return badManifest("first entry must be the root %q", RootPath)
	}
	for i := range d.Changed {
		e := &d.Changed[i]
		root := e.Path == RootPath
		if !root {
			if err := checkPath(e.Path); err != nil {
				return badManifest("entry %q: %v", e.Path, err)
			}
			if j := findEntry(entries, parentPath(e.Path)); j < 0 || entries[j].Type != TypeDir {
				return badManifest("entry %q: parent %q is not a directory entry", e.Path, parentPath(e.Path))
			}
		}
		if err := checkEntry(e, root, len(entries)); err != nil {
			return err
		}
		if e.Type != TypeDir {
			if lo, hi := below(entries, e.Path); lo < hi && !root {
				return badManifest("entry %q: parent %q is not a directory entry", entries[lo].Path, e.Path)
			}
		}
	}
	for _, p := range d.Removed {
		if lo, hi := below(entries, p); lo < hi && findEntry(entries, p) < 0 {
			return badManifest("entry %q: parent %q is not a directory entry", entries[lo].Path, p)
		}
	}
	return nil
}
