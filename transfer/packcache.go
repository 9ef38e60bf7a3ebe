package transfer

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The indexes of a store's packs are also kept together in one file,
// packs.cache, so that opening a store reads one file and not one per
// pack. A CLI opens the coordinator's store on every sync, and each
// re-sync adds two packs (the changed chunks, the manifest), so opening
// got dearer with every sync. The file is only a speed-up: a pack it does
// not list is read as before, one it lists that is gone is passed over
// (packs are never changed once written, only removed whole), and a
// damaged file is ignored and written again.
const (
	packCacheFile  = "packs.cache"
	packCacheMagic = "SKYPIDX1"
	// packCacheAfter is how many packs an open must have read one by one
	// before it writes the cache again.
	packCacheAfter = 16
)

// loadPackCache returns the pack indexes the store's cache holds, by pack
// name; nil when there is none or it is damaged.
func loadPackCache(dir string) map[string][]packEntry {
	data, err := os.ReadFile(filepath.Join(dir, packCacheFile))
	if err != nil || len(data) < len(packCacheMagic)+4 || string(data[:len(packCacheMagic)]) != packCacheMagic {
		return nil
	}
	body, sum := data[:len(data)-4], data[len(data)-4:]
	if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(sum) {
		return nil
	}
	d := &decoder{data: body[len(packCacheMagic):]}
	n := d.count(2)
	out := make(map[string][]packEntry, n)
	for range n {
		name := string(d.bytes(d.uvarint()))
		entries := make([]packEntry, d.count(34))
		for i := range entries {
			copy(entries[i].id[:], d.bytes(32))
			entries[i].off, entries[i].size = int64(d.uvarint()), int64(d.uvarint())
		}
		if d.err != nil {
			return nil
		}
		out[name] = entries
	}
	if d.err != nil || len(d.data) != 0 {
		return nil
	}
	return out
}

// savePackCache writes the cache of the packs in the index, atomically;
// best effort. A chunk held by two packs is listed under the one the
// index took. s.mu is held.
func (s *DiskStore) savePackCache() {
	byPack := make(map[string][]packEntry, len(s.packs))
	for id, loc := range s.index {
		byPack[loc.pack] = append(byPack[loc.pack], packEntry{id: id, off: loc.off, size: loc.size})
	}
	b := []byte(packCacheMagic)
	b = binary.AppendUvarint(b, uint64(len(byPack)))
	for name, entries := range byPack {
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		b = binary.AppendUvarint(b, uint64(len(entries)))
		for _, e := range entries {
			b = append(b, e.id[:]...)
			b = binary.AppendUvarint(b, uint64(e.off))
			b = binary.AppendUvarint(b, uint64(e.size))
		}
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
	_ = writeFileAtomic(filepath.Join(s.dir, packCacheFile), b, 0o644) // only a speed-up
}
