package transfer

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// storeSink is BuildAndUpload's head start when the store is a DiskStore
// on this machine (the client beside its coordinator): the chunks go
// into packs straight from the bytes BuildManifest just read and hashed,
// with no second read, no second hash and no network in between. Like
// the early sender it is only a head start: a failure stops it, and the
// closing Upload writes whatever is still missing.
type storeSink struct {
	s *DiskStore

	mu     sync.Mutex
	free   []*packBatch // batches no worker is writing to
	seen   map[ChunkID]bool
	failed bool
	chunks int   // written into the store
	bytes  int64 // their bytes
}

// sinkPackBytes is how much one pack takes before it is committed and
// another begun: the coordinator's packs stay about the size of an
// upload's, and chunks show in the store while the rest are written.
const sinkPackBytes = 64 << 20

func newStoreSink(s *DiskStore) *storeSink {
	return &storeSink{s: s, seen: make(map[ChunkID]bool)}
}

// put stores one chunk whose bytes hash to ref.ID (BuildOptions
// onChunkData); data is only valid during the call. Several goroutines
// call it at once, each then writing a pack of its own.
func (k *storeSink) put(ref ChunkRef, data []byte) {
	k.mu.Lock()
	if k.failed || k.seen[ref.ID] {
		k.mu.Unlock()
		return
	}
	k.seen[ref.ID] = true
	var b *packBatch
	if n := len(k.free); n > 0 {
		b, k.free = k.free[n-1], k.free[:n-1]
	} else {
		b = k.s.newBatch().(*packBatch)
	}
	k.mu.Unlock()
	added, err := b.putHashed(ref.ID, data)
	if err == nil && b.off >= sinkPackBytes {
		if err = b.Commit(); err == nil {
			b = k.s.newBatch().(*packBatch)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		b.Abort()
		k.failed = true
		return
	}
	if added {
		k.chunks++
		k.bytes += ref.Size
	}
	k.free = append(k.free, b)
}

// close commits what the batches hold.
func (k *storeSink) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, b := range k.free {
		if k.failed {
			b.Abort()
		} else if b.Commit() != nil {
			k.failed = true
		}
	}
	k.free = nil
}

// sent returns what went into the store.
func (k *storeSink) sent() (int, int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.chunks, k.bytes
}

// putHashed adds a chunk the caller has just hashed to id from these very
// bytes, without hashing it again. It reports false for a chunk the
// store or the batch already holds.
func (b *packBatch) putHashed(id ChunkID, data []byte) (bool, error) {
	if b.err != nil {
		return false, b.err
	}
	b.s.mu.Lock()
	_, ok := b.s.index[id]
	b.s.mu.Unlock()
	if ok || b.added[id] {
		return false, nil
	}
	if err := b.open(); err != nil {
		return false, err
	}
	if _, err := b.f.Write(data); err != nil {
		if terr := b.rewind(); terr != nil {
			return false, terr
		}
		return false, fmt.Errorf("store chunk %s: %w", id, err)
	}
	b.entries = append(b.entries, packEntry{id: id, off: b.off, size: int64(len(data))})
	b.added[id] = true
	b.off += int64(len(data))
	return true, nil
}

// open creates the batch's pack file on its first chunk.
func (b *packBatch) open() error {
	if b.f != nil {
		return nil
	}
	f, err := os.CreateTemp(filepath.Join(b.s.dir, packsDir), "tmp-")
	if err != nil {
		b.err = fmt.Errorf("store chunks: %w", err)
		return b.err
	}
	b.f, b.tmp = f, f.Name()
	return nil
}
