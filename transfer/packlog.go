package transfer

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// A store shared by several processes learns of the packs the others
// wrote from packs.log: each writer appends a new pack's name once it is
// in place, and a reader that misses a chunk reads the log from where it
// stopped, instead of listing the packs directory. On a machine whose
// nodes share the coordinator's store, every node's re-sync asked for the
// one chunk the head had just fetched, and listed a directory that grows
// by a pack or two per sync to find it.
//
// The log is only a speed-up. Opening a store lists the directory, as
// before; a reader without a log (or whose log shrank) lists it again; a
// pack a crashed writer left out of the log is found at the next open;
// a pack the log names that is gone is passed over.
const packLogFile = "packs.log"

// logPack appends a new pack's name to the store's log; best effort.
func (s *DiskStore) logPack(name string) {
	f, err := os.OpenFile(filepath.Join(s.dir, packLogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	_, _ = f.Write([]byte(name + "\n")) // one small write: appends do not interleave
	_ = f.Close()
}

// logSize is the log's size now, where a reader that lists the directory
// next may start reading it; -1 without a log.
func (s *DiskStore) logSize() int64 {
	fi, err := os.Stat(filepath.Join(s.dir, packLogFile))
	if err != nil {
		return -1
	}
	return fi.Size()
}

// readLoggedPacks adds to the index the packs the log names past what this
// store read of it, or lists the directory when the log cannot serve
// (readNewPacks). s.mu is held.
func (s *DiskStore) readLoggedPacks() error {
	if s.logOff < 0 {
		return s.readNewPacks(false)
	}
	f, err := os.Open(filepath.Join(s.dir, packLogFile))
	if err != nil {
		return s.readNewPacks(false)
	}
	defer f.Close() // read only
	fi, err := f.Stat()
	if err != nil || fi.Size() < s.logOff {
		return s.readNewPacks(false)
	}
	tail := make([]byte, fi.Size()-s.logOff)
	if _, err := f.ReadAt(tail, s.logOff); err != nil && !errors.Is(err, io.EOF) {
		return s.readNewPacks(false)
	}
	end := bytes.LastIndexByte(tail, '\n') + 1 // a line still being written waits
	s.logOff += int64(end)
	var read []packIndex
	for _, name := range strings.Split(string(tail[:end]), "\n") {
		if name == "" || s.packs[name] || strings.ContainsRune(name, '/') || !strings.HasSuffix(name, packSuffix) {
			continue
		}
		s.packs[name] = true
		idx, mtime, err := readPackIndex(filepath.Join(s.dir, packsDir, name))
		if err != nil {
			continue // removed since, or damaged: its chunks are fetched again
		}
		read = append(read, packIndex{name, idx, mtime})
	}
	s.addPacks(read)
	return nil
}
