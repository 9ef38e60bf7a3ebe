package transfer

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// StatCache remembers the chunk lists of files by their stat, so that
// BuildManifest reads only files that changed since the last build (git's
// index does the same). An entry is used only when path, size, mtime,
// ctime, device and inode all match. As in git, a file modified within two
// seconds of a build is not remembered (a later change could keep the same
// mtime on a coarse clock), so it is read again next time.
//
// One cache serves one root; keep it outside the tree, for instance under
// the user's ~/.sky-coord, named after the root's absolute path.
type StatCache struct {
	mu    sync.Mutex
	old   map[string]cacheEntry
	seen  map[string]cacheEntry
	since int64 // unix nanos: entries changed after this are not kept
}

type cacheEntry struct {
	fileStat
	chunks []ChunkRef
}

// fileStat is what tells whether a file may have changed since it was
// last looked at: size, times, device and inode.
type fileStat struct {
	size, mtime, ctime int64
	dev, ino           uint64
}

func statOf(fi fs.FileInfo) fileStat {
	dev, ino, ctime := fileIdentity(fi)
	return fileStat{size: fi.Size(), mtime: fi.ModTime().UnixNano(), ctime: ctime, dev: dev, ino: ino}
}

func appendFileStat(b []byte, s fileStat) []byte {
	b = binary.AppendVarint(b, s.size)
	b = binary.AppendVarint(b, s.mtime)
	b = binary.AppendVarint(b, s.ctime)
	b = binary.AppendUvarint(b, s.dev)
	return binary.AppendUvarint(b, s.ino)
}

func (d *decoder) fileStat() fileStat {
	return fileStat{size: d.varint(), mtime: d.varint(), ctime: d.varint(), dev: d.uvarint(), ino: d.uvarint()}
}

// The magic names the chunking parameters: a cache written with other
// ones is dropped.
var statCacheMagic = fmt.Sprintf("SKYSTAT1 %d %d %d %x\n", MinChunkSize, MaxChunkSize, chunkAverageBits, uint64(chunkPolynomial))

// NewStatCache returns an empty cache.
func NewStatCache() *StatCache {
	return &StatCache{old: map[string]cacheEntry{}, seen: map[string]cacheEntry{}}
}

// LoadStatCache reads the cache saved at file. A missing, unreadable or
// outdated cache file gives an empty cache: it only costs time.
func LoadStatCache(file string) *StatCache {
	c := NewStatCache()
	data, err := os.ReadFile(file)
	if err != nil || len(data) < len(statCacheMagic) || string(data[:len(statCacheMagic)]) != statCacheMagic {
		return c
	}
	d := &decoder{data: data[len(statCacheMagic):]}
	n := d.count(8)
	old := make(map[string]cacheEntry, n)
	for range n {
		path := string(d.bytes(d.uvarint()))
		e := cacheEntry{fileStat: d.fileStat()}
		nc := d.count(33)
		if nc > 0 {
			e.chunks = make([]ChunkRef, nc)
		}
		for j := range e.chunks {
			copy(e.chunks[j].ID[:], d.bytes(32))
			e.chunks[j].Size = int64(d.uvarint())
		}
		if d.err != nil {
			return c
		}
		old[path] = e
	}
	c.old = old
	return c
}

// Save writes the entries of the last build (files no longer in the tree
// are dropped) to file, atomically.
func (c *StatCache) Save(file string) error {
	c.mu.Lock()
	b := []byte(statCacheMagic)
	b = binary.AppendUvarint(b, uint64(len(c.seen)))
	for path, e := range c.seen {
		b = binary.AppendUvarint(b, uint64(len(path)))
		b = append(b, path...)
		b = appendFileStat(b, e.fileStat)
		b = binary.AppendUvarint(b, uint64(len(e.chunks)))
		for _, ch := range e.chunks {
			b = append(b, ch.ID[:]...)
			b = binary.AppendUvarint(b, uint64(ch.Size))
		}
	}
	c.mu.Unlock()
	if err := writeFileAtomic(file, b, 0o600); err != nil {
		return fmt.Errorf("save stat cache: %w", err)
	}
	return nil
}

// begin starts a build: entries are remembered afresh.
func (c *StatCache) begin(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seen) > 0 {
		c.old = c.seen
	}
	c.seen = make(map[string]cacheEntry, len(c.old))
	c.since = now.Add(-2 * time.Second).UnixNano()
}

// resume starts a build that describes only some files again (Rebuild):
// what the cache remembers of the others is kept as it is.
func (c *StatCache) resume(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seen) > 0 {
		c.old = c.seen
	}
	c.seen = c.old // one map: what is not looked at again stays
	c.since = now.Add(-2 * time.Second).UnixNano()
}

// forget drops what the cache remembers of paths and of the files below
// them: a Rebuild found them gone.
func (c *StatCache) forget(paths []string) {
	if len(paths) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	gone := make(map[string]bool, len(paths))
	for _, p := range paths {
		gone[p] = true
		delete(c.seen, p)
	}
	for p := range c.seen {
		for d := p; ; {
			i := strings.LastIndexByte(d, '/')
			if i < 0 {
				break
			}
			if d = d[:i]; gone[d] {
				delete(c.seen, p)
				break
			}
		}
	}
}

// entries returns how many files the cache remembers (0 for no cache).
func (c *StatCache) entries() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.old)
}

// lookup returns the chunks remembered for path when its stat matches.
func (c *StatCache) lookup(path string, fi fs.FileInfo) ([]ChunkRef, bool) {
	want := statOf(fi)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.old[path]
	if !ok || e.fileStat != want {
		return nil, false
	}
	if e.mtime < c.since {
		c.seen[path] = e
	}
	return e.chunks, true
}

// remember records the chunks read from path, unless it changed too
// recently to be trusted later.
func (c *StatCache) remember(path string, fi fs.FileInfo, chunks []ChunkRef) {
	e := cacheEntry{fileStat: statOf(fi), chunks: chunks}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.mtime < c.since {
		c.seen[path] = e
	} else {
		delete(c.seen, path) // what a resumed build kept is out of date
	}
}

// writeFileAtomic writes data to a temporary file beside file and renames
// it into place.
func writeFileAtomic(file string, data []byte, perm fs.FileMode) (err error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name()) // best effort: err says what failed
		}
	}()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), file)
}
