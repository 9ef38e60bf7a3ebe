package transfer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/zeebo/blake3"
)

// The canonical manifest encoding is binary and compact, so a node decodes
// the manifest of a 5,000-file tree in about a millisecond:
//
//	magic "SKYMAN1\n"
//	uvarint  entry count
//	per entry, in order:
//	  uvarint  bytes shared with the previous entry's path
//	  uvarint  length of the rest of the path, then its bytes
//	  byte     'd' directory, 'f' file, 'l' symbolic link
//	  uvarint  mode (0o7777 bits)
//	  varint   mtime, Unix nanoseconds
//	  file:    uvarint chunk count, then per chunk 32 id bytes and uvarint size
//	  link:    uvarint target length, then its bytes
//
// A file's size is the sum of its chunks. The same manifest always encodes
// to the same bytes; its BLAKE3 hash is the manifest id.
const manifestMagic = "SKYMAN1\n"

var typeCodes = map[EntryType]byte{TypeDir: 'd', TypeFile: 'f', TypeSymlink: 'l'}

// appendEntries writes the entry list (count and entries) to b.
func appendEntries(b []byte, entries []Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(entries)))
	prev := ""
	for i := range entries {
		b = appendEntry(b, prev, &entries[i])
		prev = entries[i].Path
	}
	return b
}

// appendEntry writes e to b, its path as what it shares with prev, the
// path of the entry before it, and the rest.
func appendEntry(b []byte, prev string, e *Entry) []byte {
	shared := 0
	for shared < len(prev) && shared < len(e.Path) && prev[shared] == e.Path[shared] {
		shared++
	}
	b = binary.AppendUvarint(b, uint64(shared))
	b = binary.AppendUvarint(b, uint64(len(e.Path)-shared))
	b = append(b, e.Path[shared:]...)
	b = append(b, typeCodes[e.Type])
	b = binary.AppendUvarint(b, uint64(e.Mode))
	b = binary.AppendVarint(b, e.MTime)
	switch e.Type {
	case TypeFile:
		b = binary.AppendUvarint(b, uint64(len(e.Chunks)))
		for _, c := range e.Chunks {
			b = append(b, c.ID[:]...)
			b = binary.AppendUvarint(b, uint64(c.Size))
		}
	case TypeSymlink:
		b = binary.AppendUvarint(b, uint64(len(e.Target)))
		b = append(b, e.Target...)
	}
	return b
}

// decoder reads the binary encodings; its first error sticks.
type decoder struct {
	data []byte
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadManifest, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data)
	if n <= 0 {
		d.fail("truncated or overlong number")
		return 0
	}
	d.data = d.data[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.data)
	if n <= 0 {
		d.fail("truncated or overlong number")
		return 0
	}
	d.data = d.data[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.data)) {
		d.fail("truncated: want %d more bytes, have %d", n, len(d.data))
		return nil
	}
	b := d.data[:n]
	d.data = d.data[n:]
	return b
}

// count reads a count of items that each take at least min bytes, so a
// corrupt count cannot make the decoder allocate more than the input
// could hold.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.data)/min) {
		d.fail("count %d is larger than the data could hold", n)
		return 0
	}
	return int(n)
}

// entries reads an entry list written by appendEntries. The paths and the
// chunk lists are cut from a few large blocks rather than allocated one
// by one: a manifest of 5,000 files decodes with a dozen allocations
// instead of 10,000. A block is never written again once a path or list
// is cut from it, and a list's capacity ends with it.
func (d *decoder) entries() []Entry {
	n := d.count(5)
	entries := make([]Entry, n)
	prev := ""
	var paths []byte
	var chunks []ChunkRef
	for i := range entries {
		e := &entries[i]
		shared := d.uvarint()
		if shared > uint64(len(prev)) {
			d.fail("entry %d: shares %d bytes with a %d-byte path", i, shared, len(prev))
		}
		suffix := d.bytes(d.uvarint())
		if d.err != nil {
			return nil
		}
		size := int(shared) + len(suffix)
		if cap(paths)-len(paths) < size {
			paths = make([]byte, 0, max(size, 64<<10))
		}
		start := len(paths)
		paths = append(append(paths, prev[:shared]...), suffix...)
		if size > 0 {
			e.Path = unsafe.String(&paths[start], size)
		}
		prev = e.Path
		code := d.bytes(1)
		e.Mode = uint32(min(d.uvarint(), 1<<32-1))
		e.MTime = d.varint()
		if d.err != nil {
			return nil
		}
		switch code[0] {
		case 'd':
			e.Type = TypeDir
		case 'f':
			e.Type = TypeFile
			nc := d.count(33)
			if nc > 0 {
				if cap(chunks)-len(chunks) < nc {
					chunks = make([]ChunkRef, 0, max(nc, 2048))
				}
				start := len(chunks)
				chunks = chunks[:start+nc]
				e.Chunks = chunks[start : start+nc : start+nc]
			}
			for j := range e.Chunks {
				copy(e.Chunks[j].ID[:], d.bytes(32))
				size := d.uvarint()
				if size > maxFileSize {
					d.fail("entry %q: chunk size %d out of range", e.Path, size)
					return nil
				}
				e.Chunks[j].Size = int64(size)
				e.Size += int64(size)
			}
		case 'l':
			e.Type = TypeSymlink
			e.Target = string(d.bytes(d.uvarint()))
		default:
			d.fail("entry %q: unknown type code %q", e.Path, code[0])
			return nil
		}
	}
	return entries
}

// encodeManifest returns the canonical binary encoding of m (which the
// caller has validated).
func encodeManifest(m *Manifest) []byte {
	b := make([]byte, 0, 64+len(m.Entries)*64)
	b = append(b, manifestMagic...)
	return appendEntries(b, m.Entries)
}

// hashManifest returns the id of m's canonical encoding (m validated),
// hashing the encoding a piece at a time: a re-sync that checks the id of
// a manifest it built would otherwise make, and fault in, the whole
// encoding (300 KB for 5,000 files) only to hash it.
func hashManifest(m *Manifest) ChunkID {
	h := blake3.New()
	b := make([]byte, 0, hashPiece+1024)
	b = append(b, manifestMagic...)
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	prev := ""
	for i := range m.Entries {
		if len(b) >= hashPiece {
			_, _ = h.Write(b) // a Hasher's Write never fails
			b = b[:0]
		}
		b = appendEntry(b, prev, &m.Entries[i])
		prev = m.Entries[i].Path
	}
	_, _ = h.Write(b)
	var id ChunkID
	h.Sum(id[:0])
	return id
}

// hashPiece is how much of an encoding hashManifest hashes at a time.
const hashPiece = 16 << 10

// decodeManifest reads the binary encoding, without validating it.
func decodeManifest(data []byte) (Manifest, error) {
	if len(data) < len(manifestMagic) || string(data[:len(manifestMagic)]) != manifestMagic {
		return Manifest{}, fmt.Errorf("%w: not a sky-coord manifest (or one of a newer version: update sky-coord on both sides)", ErrBadManifest)
	}
	d := &decoder{data: data[len(manifestMagic):]}
	m := Manifest{Version: ManifestVersion, Entries: d.entries()}
	if d.err == nil && len(d.data) > 0 {
		d.fail("%d bytes after the last entry", len(d.data))
	}
	if d.err != nil {
		return Manifest{}, d.err
	}
	return m, nil
}

// readAllLimit reads r to the end, failing when it holds more than limit
// bytes.
func readAllLimit(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, errors.New("larger than " + fmt.Sprint(limit) + " bytes")
	}
	return data, nil
}

// appendPaths writes a list of paths: a count, then each with its length.
func appendPaths(b []byte, paths []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(paths)))
	for _, p := range paths {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

// paths reads a list of paths: a count, then each with its length.
func (d *decoder) paths() []string {
	n := d.count(1)
	out := make([]string, 0, n)
	for range n {
		b := d.bytes(d.uvarint())
		if d.err != nil {
			return nil
		}
		out = append(out, string(b))
	}
	return out
}
