package transfer

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/restic/chunker"
)

func TestChunkPolynomialIsIrreducible(t *testing.T) {
	t.Parallel()
	if !chunkPolynomial.Irreducible() {
		t.Fatalf("chunk polynomial %v is not irreducible", chunkPolynomial)
	}
	if d := chunkPolynomial.Deg(); d != 53 {
		t.Fatalf("chunk polynomial has degree %d, want 53", d)
	}
}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// refChunks cuts data with the chunker alone, no shortcut for small data.
func refChunks(t *testing.T, data []byte) []ChunkRef {
	t.Helper()
	c := chunker.NewWithBoundaries(bytes.NewReader(data), chunkPolynomial, MinChunkSize, MaxChunkSize)
	c.SetAverageBits(chunkAverageBits)
	buf := make([]byte, MaxChunkSize)
	var refs []ChunkRef
	for {
		ch, err := c.Next(buf)
		if errors.Is(err, io.EOF) {
			return refs
		}
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ChunkRef{ID: HashChunk(ch.Data), Size: int64(ch.Length)})
	}
}

func TestChunksMatchTheChunker(t *testing.T) {
	t.Parallel()
	fc := newFileChunker()
	for _, n := range []int{0, 1, 4095, MinChunkSize - 1, MinChunkSize, MinChunkSize + 1, 3 << 20, 17 << 20} {
		data := randomBytes(uint64(n), n)
		got, size, err := fc.chunks(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if size != int64(n) {
			t.Fatalf("%d bytes: size %d", n, size)
		}
		want := refChunks(t, data)
		if !slicesEqual(got, want) {
			t.Fatalf("%d bytes: %d chunks, the chunker alone makes %d", n, len(got), len(want))
		}
		for i, c := range got {
			if c.Size > MaxChunkSize || (i < len(got)-1 && c.Size < MinChunkSize) {
				t.Fatalf("%d bytes: chunk %d has %d bytes, outside [%d, %d]", n, i, c.Size, MinChunkSize, MaxChunkSize)
			}
		}
		if n > 0 && n < MinChunkSize && len(got) != 1 {
			t.Fatalf("%d bytes: %d chunks, want one", n, len(got))
		}
	}
}

func slicesEqual(a, b []ChunkRef) bool { return sameChunks(a, b) }

// TestChunksAreContentDefined checks that an insertion re-cuts only the
// chunks around it.
func TestChunksAreContentDefined(t *testing.T) {
	t.Parallel()
	data := randomBytes(7, 16<<20)
	fc := newFileChunker()
	before, _, err := fc.chunks(bytes.NewReader(data))
	mustNo(t, err)
	edited := append(append(append([]byte{}, data[:8<<20]...), "inserted"...), data[8<<20:]...)
	after, _, err := fc.chunks(bytes.NewReader(edited))
	mustNo(t, err)
	old := map[ChunkID]bool{}
	for _, c := range before {
		old[c.ID] = true
	}
	var changed int
	for _, c := range after {
		if !old[c.ID] {
			changed++
		}
	}
	if changed == 0 || changed > 2 {
		t.Fatalf("%d of %d chunks changed after an 8-byte insert, want 1 or 2", changed, len(after))
	}
}

func TestChunkIDText(t *testing.T) {
	t.Parallel()
	id := HashChunk([]byte("hello"))
	got, err := ParseChunkID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseChunkID(%s) = %v, %v", id, got, err)
	}
	for _, bad := range []string{"", "abc", id.String()[:63] + "g", "AB" + id.String()[2:], id.String() + "00"} {
		if _, err := ParseChunkID(bad); err == nil {
			t.Errorf("ParseChunkID(%q) accepted", bad)
		}
	}
}
