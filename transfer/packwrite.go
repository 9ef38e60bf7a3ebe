package transfer

// Writing packs: a batch of chunks becomes one pack file of a DiskStore
// (its layout is in diskstore.go).

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/zeebo/blake3"
)

// batchStarter is an optional capability of a ChunkStore: many chunks
// written as one unit, which is much cheaper than one by one.
type batchStarter interface {
	newBatch() chunkBatch
}

// chunkBatch collects chunks; they become visible together at Commit.
type chunkBatch interface {
	// Put adds a chunk after checking its hash (ErrChunkCorrupt, and the
	// chunk is left out, when it does not match); one already in the
	// store is skipped.
	Put(ctx context.Context, id ChunkID, r io.Reader) error
	Commit() error
	Abort()
}

// packBatch writes chunks into a new pack.
type packBatch struct {
	s       *DiskStore
	f       *os.File
	tmp     string
	off     int64
	entries []packEntry
	added   map[ChunkID]bool
	h       *blake3.Hasher
	err     error // a write failed: the batch can only be aborted
}

func (s *DiskStore) newBatch() chunkBatch {
	return &packBatch{s: s, h: blake3.New(), added: map[ChunkID]bool{}}
}

func (b *packBatch) Put(ctx context.Context, id ChunkID, r io.Reader) error {
	if b.err != nil {
		return b.err
	}
	b.s.mu.Lock()
	_, ok := b.s.index[id]
	b.s.mu.Unlock()
	if ok || b.added[id] {
		return nil
	}
	if err := b.open(); err != nil {
		return err
	}
	b.h.Reset()
	bp := copyBufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(b.f, b.h), ctxReader{ctx, r}, *bp)
	copyBufPool.Put(bp)
	if err != nil {
		// What was read is of no use; a read error may also leave the
		// stream behind it unusable, so the caller decides what next.
		if terr := b.rewind(); terr != nil {
			return terr
		}
		return fmt.Errorf("store chunk %s: %w", id, err)
	}
	var got ChunkID
	b.h.Sum(got[:0])
	if got != id {
		if terr := b.rewind(); terr != nil {
			return terr
		}
		return fmt.Errorf("store chunk %s: %w (the bytes hash to %s)", id, ErrChunkCorrupt, got)
	}
	b.entries = append(b.entries, packEntry{id: id, off: b.off, size: n})
	b.added[id] = true
	b.off += n
	return nil
}

// rewind drops the bytes written after the last good chunk.
func (b *packBatch) rewind() error {
	if err := b.f.Truncate(b.off); err != nil {
		b.err = err
		return err
	}
	if _, err := b.f.Seek(b.off, io.SeekStart); err != nil {
		b.err = err
		return err
	}
	return nil
}

// Commit writes the pack's index, renames it into place and makes its
// chunks visible.
func (b *packBatch) Commit() error {
	if b.err != nil {
		b.Abort()
		return b.err
	}
	if len(b.entries) == 0 {
		b.Abort()
		return nil
	}
	idx := make([]byte, 0, len(b.entries)*packEntrySize+packFooterSize)
	for _, e := range b.entries {
		idx = append(idx, e.id[:]...)
		idx = binary.BigEndian.AppendUint64(idx, uint64(e.off))
		idx = binary.BigEndian.AppendUint64(idx, uint64(e.size))
	}
	idx = binary.BigEndian.AppendUint64(idx, uint64(len(b.entries)))
	idx = append(idx, packMagic...)
	if _, err := b.f.Write(idx); err != nil {
		b.Abort()
		return fmt.Errorf("store chunks: %w", err)
	}
	if err := b.f.Close(); err != nil {
		b.f = nil
		b.Abort()
		return fmt.Errorf("store chunks: %w", err)
	}
	b.f = nil
	name := b.entries[0].id.String()[:16] + "-" + randomHex() + packSuffix
	if err := os.Rename(b.tmp, filepath.Join(b.s.dir, packsDir, name)); err != nil {
		b.Abort()
		return fmt.Errorf("store chunks: %w", err)
	}
	s := b.s
	s.logPack(name)
	s.mu.Lock()
	s.packs[name] = true
	for _, e := range b.entries {
		if _, ok := s.index[e.id]; !ok {
			s.index[e.id] = chunkInPack{pack: name, off: e.off, size: e.size}
		}
		if p := s.pending[e.id]; p != nil {
			close(p.done)
			delete(s.pending, e.id)
		}
	}
	s.mu.Unlock()
	b.entries = nil
	return nil
}

// Abort drops the batch.
func (b *packBatch) Abort() {
	if b.f != nil {
		_ = b.f.Close() // the file is removed next
		b.f = nil
	}
	if b.tmp != "" {
		_ = os.Remove(b.tmp) // best effort: a leftover is removed at the next open
		b.tmp = ""
	}
	b.entries = nil
}
