package transfer

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// applyState is what Apply remembers of a directory it wrote: the manifest
// it applied and, for each file, the inode, size and mtime the file had on
// disk right after. A path is sky-coord's to delete later only while it
// still looks exactly as recorded; anything else there is the job's.
type applyState struct {
	dst     string // absolute directory the state belongs to
	entries []Entry
	recs    []fileRecord // by entry index; files only
	// What the state file holds: the bytes of its snapshot and of the
	// journal appended after it, and whether it must be written whole
	// next time (its end was torn, or it is not this state's).
	snapshot, journal, records int
	rewrite                    bool
	// In memory only, for a sparse apply in a view (applysparse.go): the
	// lower layer of the view the state is of, when known, and the paths
	// of entries that layer lacks, sorted.
	lowerOf    *Layer
	notInLower []string
}

type fileRecord struct {
	ino   uint64
	size  int64
	mtime int64
}

// stateMagic starts a state file:
//
//	magic, uvarint len + destination path, entry list (as in a manifest),
//	then per file entry in order: uvarint inode, varint mtime.
//
// A journal of changes may follow the snapshot, one record per Apply
// that changed little: uvarint payload length, the payload, and its
// CRC-32 (Castagnoli, 4 bytes little-endian). A payload is the removed
// paths (uvarint count, then uvarint length + bytes each) and the entries
// added or changed (an entry list and file records, as in the snapshot).
//
// Versions before the journal read a file with one as no record at all,
// which only makes them more careful.
const stateMagic = "SKYSTATE1\n"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// DefaultStateFile is where Apply keeps its record of dst when
// ApplyOptions.StateFile is empty: a hidden file beside dst, outside it, so
// the job never sees or syncs it.
func DefaultStateFile(dst string) string {
	dst = filepath.Clean(dst)
	return filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".sky-sync-state")
}

// find returns the index of the entry at path p, or -1.
func (st *applyState) find(p string) int {
	return findEntry(st.entries, p)
}

// below returns the run entries[lo:hi] of the entries strictly below
// directory dir in sorted entries: the paths that start with dir and "/"
// follow one another in byte order. For RootPath it is every entry but the
// root.
func below(entries []Entry, dir string) (lo, hi int) {
	if dir == RootPath {
		return min(1, len(entries)), len(entries)
	}
	prefix := dir + "/"
	lo, _ = slices.BinarySearchFunc(entries, prefix, func(e Entry, p string) int { return comparePaths(e.Path, p) })
	hi = lo
	for hi < len(entries) && strings.HasPrefix(entries[hi].Path, prefix) {
		hi++
	}
	return lo, hi
}

// findEntry returns the index of the entry at path p in sorted entries, or
// -1.
func findEntry(entries []Entry, p string) int {
	i, ok := slices.BinarySearchFunc(entries, p, func(e Entry, p string) int { return comparePaths(e.Path, p) })
	if !ok {
		return -1
	}
	return i
}

// loadState reads the state file; a missing, unreadable or foreign one
// reads as empty, which only makes Apply more careful (it deletes nothing
// and compares files by size and mtime, as rsync does). A journal whose
// end is torn (a crash while appending) is read up to the tear.
func loadState(file, dst string) *applyState {
	st := &applyState{dst: dst, rewrite: true}
	data, err := os.ReadFile(file)
	if err != nil || len(data) < len(stateMagic) || string(data[:len(stateMagic)]) != stateMagic {
		return st
	}
	d := &decoder{data: data[len(stateMagic):]}
	if string(d.bytes(d.uvarint())) != dst {
		return st
	}
	entries := d.entries()
	recs := d.records(entries)
	if d.err != nil || !pathsAscend(entries) {
		return st
	}
	st.entries, st.recs = entries, recs
	st.snapshot = len(data) - len(d.data)
	st.rewrite = false
	for len(d.data) > 0 {
		n := d.uvarint()
		payload := d.bytes(n)
		sum := d.bytes(4)
		if d.err != nil || crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(sum) {
			st.rewrite = true
			break
		}
		pd := &decoder{data: payload}
		removed := pd.paths()
		changed := pd.entries()
		changedRecs := pd.records(changed)
		if pd.err != nil || len(pd.data) != 0 || !slices.IsSortedFunc(removed, comparePaths) || !pathsAscend(changed) {
			st.rewrite = true
			break
		}
		st.entries, st.recs = mergeEntries(st.entries, st.recs, removed, changed, changedRecs)
		st.journal = len(data) - len(d.data) - st.snapshot
		st.records++
	}
	return st
}

// pathsAscend reports whether the entries' paths are in strictly
// ascending order, as the lookups by path need.
func pathsAscend(entries []Entry) bool {
	for i := 1; i < len(entries); i++ {
		if comparePaths(entries[i-1].Path, entries[i].Path) >= 0 {
			return false
		}
	}
	return true
}

// records reads the file records that follow an entry list.
func (d *decoder) records(entries []Entry) []fileRecord {
	recs := make([]fileRecord, len(entries))
	for i := range entries {
		if entries[i].Type == TypeFile {
			recs[i] = fileRecord{ino: d.uvarint(), mtime: d.varint(), size: entries[i].Size}
		}
	}
	return recs
}

// mergeEntries returns entries (sorted, with their records) less the
// removed paths, with the changed entries added or put in place of those
// at the same path. All three lists are sorted. Without records (recs
// nil), it returns none. The entries between two paths removed or changed
// are copied as a run, found by binary search: the cost beyond the copy is
// in the size of the change.
func mergeEntries(entries []Entry, recs []fileRecord, removed []string, changed []Entry, changedRecs []fileRecord) ([]Entry, []fileRecord) {
	out := make([]Entry, 0, len(entries)+len(changed))
	var outRecs []fileRecord
	if recs != nil {
		outRecs = make([]fileRecord, 0, len(entries)+len(changed))
	}
	mergeRuns(entries, removed, changed, func(lo, hi int) {
		out = append(out, entries[lo:hi]...)
		if recs != nil {
			outRecs = append(outRecs, recs[lo:hi]...)
		}
	}, func(c int) {
		out = append(out, changed[c])
		if recs != nil {
			outRecs = append(outRecs, changedRecs[c])
		}
	})
	return out, outRecs
}

// mergeRecords is mergeEntries for the records alone, a changed entry's
// record left zero, in buf's memory when it has room.
func mergeRecords(entries []Entry, recs []fileRecord, removed []string, changed []Entry, buf []fileRecord) []fileRecord {
	out := buf[:0]
	if cap(buf) < len(entries)+len(changed) {
		out = make([]fileRecord, 0, len(entries)+len(changed))
	}
	mergeRuns(entries, removed, changed, func(lo, hi int) {
		out = append(out, recs[lo:hi]...)
	}, func(int) {
		out = append(out, fileRecord{})
	})
	return out
}

// mergeRuns walks the merge of mergeEntries: keep(lo, hi) for each run of
// entries kept, add(c) for each changed entry, in order.
func mergeRuns(entries []Entry, removed []string, changed []Entry, keep func(lo, hi int), add func(c int)) {
	i, r, c := 0, 0, 0
	for r < len(removed) || c < len(changed) {
		// The next path removed or changed, and what comes before it.
		var next string
		switch {
		case c == len(changed) || (r < len(removed) && comparePaths(removed[r], changed[c].Path) < 0):
			next = removed[r]
		default:
			next = changed[c].Path
		}
		k := i + findFrom(entries[i:], next)
		keep(i, k)
		i = k
		if i < len(entries) && entries[i].Path == next {
			i++ // removed, or replaced below
		}
		for r < len(removed) && comparePaths(removed[r], next) <= 0 {
			r++
		}
		if c < len(changed) && changed[c].Path == next {
			add(c)
			c++
		}
	}
	keep(i, len(entries))
}

// findFrom returns the index of the first of sorted entries whose path is
// not before p.
func findFrom(entries []Entry, p string) int {
	k, _ := slices.BinarySearchFunc(entries, p, func(e Entry, p string) int { return comparePaths(e.Path, p) })
	return k
}

// write records entries (with rec(i) for each file entry i) as the state
// of st's directory, which st held before: by appending a journal record
// of the difference when that is small, or else by writing the file whole
// and atomically. from[i] is the index in st of entry i, or -1. It
// returns the new state.
func (st *applyState) write(file string, entries []Entry, from []int, rec func(i int) fileRecord) (*applyState, error) {
	next := &applyState{dst: st.dst, entries: entries, recs: make([]fileRecord, len(entries))}
	matched := make([]bool, len(st.entries))
	var changed []int
	for i := range entries {
		if entries[i].Type == TypeFile {
			next.recs[i] = rec(i)
		}
		if j := from[i]; j >= 0 {
			matched[j] = true
			if next.recs[i] == st.recs[j] && sameEntry(&entries[i], &st.entries[j]) {
				continue
			}
		}
		changed = append(changed, i)
	}
	var removed []string
	for j := range st.entries {
		if !matched[j] {
			removed = append(removed, st.entries[j].Path)
		}
	}
	if err := st.commit(file, next, removed, changed); err != nil {
		return nil, err
	}
	return next, nil
}

// commit saves next, which differs from st by the removed paths and the
// changed entries (indexes in next), as the state file: by appending a
// journal record when that is small, or else whole.
func (st *applyState) commit(file string, next *applyState, removed []string, changed []int) error {
	if !st.rewrite && st.snapshot > 0 {
		if len(removed) == 0 && len(changed) == 0 {
			next.snapshot, next.journal, next.records = st.snapshot, st.journal, st.records
			return nil
		}
		if b := journalRecord(removed, next.entries, changed, next.recs); st.records < maxJournalRecords && st.journal+len(b) <= st.snapshot/2 {
			if err := appendFile(file, b); err == nil {
				next.snapshot, next.journal, next.records = st.snapshot, st.journal+len(b), st.records+1
				return nil
			}
			// A journal that cannot be appended to is written whole.
		}
	}
	n, err := writeState(file, st.dst, next.entries, func(i int) fileRecord { return next.recs[i] })
	if err != nil {
		return err
	}
	next.snapshot = n
	return nil
}

// maxJournalRecords bounds the records a state file's journal holds, and
// so the work of reading it: past it, the file is written whole.
const maxJournalRecords = 32

// journalRecord encodes a journal record: the removed paths, then the
// changed entries (entries[i] for i in changed) and their file records.
func journalRecord(removed []string, entries []Entry, changed []int, recs []fileRecord) []byte {
	payload := appendPaths(nil, removed)
	es := make([]Entry, len(changed))
	for k, i := range changed {
		es[k] = entries[i]
	}
	payload = appendEntries(payload, es)
	for _, i := range changed {
		if entries[i].Type == TypeFile {
			payload = appendRecord(payload, recs[i])
		}
	}
	b := binary.AppendUvarint(nil, uint64(len(payload)))
	b = append(b, payload...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, crcTable))
}

func appendRecord(b []byte, r fileRecord) []byte {
	b = binary.AppendUvarint(b, r.ino)
	return binary.AppendVarint(b, r.mtime)
}

// appendFile appends b to the existing file.
func appendFile(file string, b []byte) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// save writes the state file whole, atomically.
func (st *applyState) save(file string) error {
	n, err := writeState(file, st.dst, st.entries, func(i int) fileRecord { return st.recs[i] })
	if err == nil {
		st.snapshot, st.journal, st.records, st.rewrite = n, 0, 0, false
	}
	return err
}

// writeState writes a state file atomically: the destination, its
// entries, and rec(i) for each file entry i. It returns its size.
func writeState(file, dst string, entries []Entry, rec func(i int) fileRecord) (int, error) {
	b := []byte(stateMagic)
	b = binary.AppendUvarint(b, uint64(len(dst)))
	b = append(b, dst...)
	b = appendEntries(b, entries)
	for i := range entries {
		if entries[i].Type == TypeFile {
			b = appendRecord(b, rec(i))
		}
	}
	if err := writeFileAtomic(file, b, 0o600); err != nil {
		return 0, fmt.Errorf("save sync state %s: %w", file, err)
	}
	return len(b), nil
}
