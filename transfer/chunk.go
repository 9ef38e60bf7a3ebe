package transfer

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
)

// Chunking parameters. Every client and node must cut the same content at
// the same places, so these are constants of the format: changing one
// changes every chunk id (bump ManifestVersion then).
const (
	// MinChunkSize is the smallest chunk cut from a file; a file smaller
	// than this is one chunk.
	MinChunkSize = 512 << 10
	// MaxChunkSize is the largest chunk.
	MaxChunkSize = 8 << 20
	// chunkAverageBits makes a cut after MinChunkSize about every 1 MiB.
	chunkAverageBits = 20
	// chunkPolynomial is the Rabin polynomial of the rolling hash: a fixed
	// irreducible polynomial of degree 53 (checked by a test), so that
	// every node agrees on the cut points.
	chunkPolynomial = chunker.Pol(0x3DA3358B4DC173)
)

// ChunkID names a chunk: the BLAKE3-256 hash of its bytes. Its text form
// is 64 lower-case hex digits.
type ChunkID [32]byte

// HashChunk returns the id of data.
func HashChunk(data []byte) ChunkID {
	return ChunkID(blake3.Sum256(data))
}

// String returns the id as hex.
func (id ChunkID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText writes the id as hex.
func (id ChunkID) MarshalText() ([]byte, error) {
	b := make([]byte, hex.EncodedLen(len(id)))
	hex.Encode(b, id[:])
	return b, nil
}

// UnmarshalText reads a hex id.
func (id *ChunkID) UnmarshalText(b []byte) error {
	if len(b) != hex.EncodedLen(len(id)) {
		return fmt.Errorf("chunk id %q: want %d hex digits", truncate(string(b), 80), hex.EncodedLen(len(id)))
	}
	var v ChunkID
	if _, err := hex.Decode(v[:], b); err != nil {
		return fmt.Errorf("chunk id %q: %w", truncate(string(b), 80), err)
	}
	for _, c := range b {
		if c >= 'A' && c <= 'F' {
			return fmt.Errorf("chunk id %q: hex digits must be lower case", b)
		}
	}
	*id = v
	return nil
}

// ParseChunkID reads the hex form of an id.
func ParseChunkID(s string) (ChunkID, error) {
	var id ChunkID
	err := id.UnmarshalText([]byte(s))
	return id, err
}

// ChunkRef is one chunk of a file: its id and length in bytes.
type ChunkRef struct {
	ID   ChunkID `json:"id"`
	Size int64   `json:"size"`
}

// fileChunker cuts files into chunks. It holds the buffers one goroutine
// reuses from file to file.
type fileChunker struct {
	ch  *chunker.Chunker
	buf []byte
	// sink, when set, is given each chunk with its bytes.
	sink func(ChunkRef, []byte)
}

func newFileChunker() *fileChunker {
	return &fileChunker{buf: make([]byte, MaxChunkSize)}
}

// chunkerPool holds file chunkers (each with a MaxChunkSize buffer)
// between files.
var chunkerPool = sync.Pool{New: func() any { return newFileChunker() }}

// chunks reads r to its end and returns its chunk list and length; empty
// content has no chunks.
func (c *fileChunker) chunks(r io.Reader) ([]ChunkRef, int64, error) {
	// Content shorter than MinChunkSize is one chunk: the chunker would not
	// cut it either, so skipping it gives the same result, faster.
	n, err := io.ReadFull(r, c.buf[:MinChunkSize])
	switch {
	case errors.Is(err, io.EOF):
		return nil, 0, nil
	case errors.Is(err, io.ErrUnexpectedEOF):
		ref := c.cut(c.buf[:n])
		return []ChunkRef{ref}, int64(n), nil
	case err != nil:
		return nil, 0, err
	}
	r = io.MultiReader(bytes.NewReader(bytes.Clone(c.buf[:n])), r)
	if c.ch == nil {
		c.ch = chunker.NewWithBoundaries(r, chunkPolynomial, MinChunkSize, MaxChunkSize)
	} else {
		c.ch.ResetWithBoundaries(r, chunkPolynomial, MinChunkSize, MaxChunkSize)
	}
	c.ch.SetAverageBits(chunkAverageBits)
	var refs []ChunkRef
	var total int64
	for {
		chunk, err := c.ch.Next(c.buf)
		if errors.Is(err, io.EOF) {
			return refs, total, nil
		}
		if err != nil {
			return nil, 0, err
		}
		refs = append(refs, c.cut(chunk.Data))
		total += int64(chunk.Length)
	}
}

// cut hashes one chunk and hands it to the sink.
func (c *fileChunker) cut(data []byte) ChunkRef {
	ref := ChunkRef{ID: HashChunk(data), Size: int64(len(data))}
	if c.sink != nil {
		c.sink(ref, data)
	}
	return ref
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
