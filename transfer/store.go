package transfer

import (
	"context"
	"errors"
	"io"
)

// ErrChunkNotFound is wrapped by Source.Get for a chunk the source does not
// hold.
var ErrChunkNotFound = errors.New("chunk not found")

// ErrChunkCorrupt is wrapped by ChunkStore.Put when the bytes given do not
// hash to the id given.
var ErrChunkCorrupt = errors.New("chunk content does not match its id")

// Source is somewhere chunks can be read from: a node's own store, a peer
// over HTTP (HTTPSource), or the files a manifest was built from
// (FileSource).
type Source interface {
	// Missing returns those of ids the source does not hold, in the order
	// given.
	Missing(ctx context.Context, ids []ChunkID) ([]ChunkID, error)
	// Get opens chunk id; the error wraps ErrChunkNotFound when the
	// source does not hold it.
	Get(ctx context.Context, id ChunkID) (io.ReadCloser, error)
}

// ChunkStore is a Source that also takes chunks in.
type ChunkStore interface {
	Source
	// Put stores the chunk read from r. It reads r to the end, checks that
	// the bytes hash to id (the error wraps ErrChunkCorrupt when they do
	// not, and nothing is stored) and makes the chunk visible atomically.
	// Putting a chunk the store already holds succeeds at once, possibly
	// without reading r.
	Put(ctx context.Context, id ChunkID, r io.Reader) error
}

// BatchGetter is an optional capability of a Source: many chunks in one
// round trip, which matters for trees of many small files.
type BatchGetter interface {
	// GetMany calls fn with each chunk of ids the source holds, one at a
	// time, in any order; the reader is valid only during the call. Chunks
	// the source lacks are left out, not reported as errors.
	GetMany(ctx context.Context, ids []ChunkID, fn func(id ChunkID, r io.Reader) error) error
}

// BatchPutter is an optional capability of a ChunkStore: many chunks in
// one round trip.
type BatchPutter interface {
	// PutMany stores the chunks refs, reading each from open, and checks
	// each as Put does.
	PutMany(ctx context.Context, refs []ChunkRef, open func(ChunkID) (io.ReadCloser, error)) error
}

// expecter is an optional capability of a ChunkStore that lets a Get for a
// chunk on its way in wait for it instead of failing: Fetcher announces
// what it is about to fetch, so a peer asking for it early is served as
// soon as it lands.
type expecter interface {
	// Expect marks ids as on their way in. release ends the wait for those
	// that never arrived; their waiters then see ErrChunkNotFound.
	Expect(ids []ChunkID) (release func())
}
