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
// the manifest Base (which a Record holds: Record.Entries). The result is
// validated as a decoded manifest is; it shares base's entries.
func (d *Delta) Apply(base []Entry) (Manifest, error) {
	if !slices.IsSortedFunc(d.Removed, comparePaths) || !pathsAscend(d.Changed) {
		return Manifest{}, fmt.Errorf("%w: delta's paths are not sorted", ErrBadManifest)
	}
	entries, _ := mergeEntries(base, nil, d.Removed, d.Changed, nil)
	m := Manifest{Version: ManifestVersion, Entries: entries}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}
