package transfer

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// applyState is what Apply remembers of a directory it wrote: the manifest
// it applied and, for each file, the inode, size and mtime the file had on
// disk right after. A path is sky-coord's to delete later only while it
// still looks exactly as recorded; anything else there is the job's.
type applyState struct {
	dst     string // absolute directory the state belongs to
	entries []Entry
	records map[string]fileRecord // by path, files only
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
const stateMagic = "SKYSTATE1\n"

// DefaultStateFile is where Apply keeps its record of dst when
// ApplyOptions.StateFile is empty: a hidden file beside dst, outside it, so
// the job never sees or syncs it.
func DefaultStateFile(dst string) string {
	dst = filepath.Clean(dst)
	return filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".sky-sync-state")
}

// loadState reads the state file; a missing, unreadable or foreign one
// reads as empty, which only makes Apply more careful (it deletes nothing
// and compares files by size and mtime, as rsync does).
func loadState(file, dst string) *applyState {
	st := &applyState{dst: dst, records: map[string]fileRecord{}}
	data, err := os.ReadFile(file)
	if err != nil || len(data) < len(stateMagic) || string(data[:len(stateMagic)]) != stateMagic {
		return st
	}
	d := &decoder{data: data[len(stateMagic):]}
	if string(d.bytes(d.uvarint())) != dst {
		return st
	}
	entries := d.entries()
	records := make(map[string]fileRecord, len(entries))
	for i := range entries {
		if entries[i].Type == TypeFile {
			records[entries[i].Path] = fileRecord{ino: d.uvarint(), mtime: d.varint(), size: entries[i].Size}
		}
	}
	if d.err != nil || len(d.data) != 0 {
		return st
	}
	st.entries, st.records = entries, records
	return st
}

// save writes the state file atomically.
func (st *applyState) save(file string) error {
	return writeState(file, st.dst, st.entries, func(i int) fileRecord { return st.records[st.entries[i].Path] })
}

// writeState writes a state file atomically: the destination, its
// entries, and rec(i) for each file entry i.
func writeState(file, dst string, entries []Entry, rec func(i int) fileRecord) error {
	b := []byte(stateMagic)
	b = binary.AppendUvarint(b, uint64(len(dst)))
	b = append(b, dst...)
	b = appendEntries(b, entries)
	for i := range entries {
		if entries[i].Type == TypeFile {
			r := rec(i)
			b = binary.AppendUvarint(b, r.ino)
			b = binary.AppendVarint(b, r.mtime)
		}
	}
	if err := writeFileAtomic(file, b, 0o600); err != nil {
		return fmt.Errorf("save sync state %s: %w", file, err)
	}
	return nil
}
