package transfer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DiskStore is a ChunkStore in a directory. Chunks are kept in pack files,
// <dir>/packs/<name>.pack: the chunks' bytes one after another, then an
// index of (id, offset, length) and a footer. A batch of chunks (one
// fetch request's worth, or one upload request's) goes into one pack, so
// syncing 5,000 small files creates a few dozen files in the store, not
// 5,000; a lone Put makes a pack of one. Every chunk's hash is checked as
// it is written; a pack is written under a temporary name and renamed into
// place, so readers never see a partial one. Packs are not fsynced: a pack
// lost in a crash is fetched again.
//
// It also serves the peer-to-peer fetch: while a Fetcher fills the store,
// a Get for a chunk on its way in waits (up to MaxWait) until it lands.
//
// Several processes may share one store directory (the agents of nodes on
// one machine do): packs are only ever added whole under unique names, so
// a store that misses a chunk looks for packs the others added before it
// answers. A chunk then lands on the machine once, however many of its
// nodes need it.
type DiskStore struct {
	dir string
	id  string // see ID
	// MaxWait bounds how long Get waits for an expected chunk; zero means
	// two minutes.
	MaxWait time.Duration

	mu      sync.Mutex
	index   map[ChunkID]chunkInPack
	packs   map[string]bool           // pack files read into index (or found damaged)
	pending map[ChunkID]*pendingChunk // ids a Fetcher said are coming
	logOff  int64                     // how much of packs.log the index holds; -1 without one (packlog.go)
	// refreshed is when Missing last told a client that a pack's chunks
	// are here, and set the pack's modification time to then: the client
	// will name them in a manifest without sending them, so RetainSince
	// (which goes by that time) must keep them as long as chunks written
	// then.
	refreshed map[string]time.Time
}

// refreshEvery is how often Missing moves the modification time of a
// pack whose chunks it finds; RetainSince's callers keep packs for much
// longer (an hour, for the coordinator).
const refreshEvery = 10 * time.Minute

// chunkInPack is where a chunk lives.
type chunkInPack struct {
	pack string // file name in the packs directory
	off  int64
	size int64
}

type pendingChunk struct {
	done chan struct{}
	refs int
}

var (
	_ ChunkStore    = (*DiskStore)(nil)
	_ expecter      = (*DiskStore)(nil)
	_ batchStarter  = (*DiskStore)(nil)
	_ fileSectioner = (*packReader)(nil)
)

// Pack file layout:
//
//	chunk bytes ...
//	index: per chunk, 32-byte id, 8-byte offset, 8-byte length (big-endian)
//	footer: 8-byte chunk count, then packMagic
const (
	packMagic      = "SKYPACK1"
	packEntrySize  = 48
	packFooterSize = 16
	packsDir       = "packs"
	packSuffix     = ".pack"
)

// NewDiskStore opens the store in dir, creating it if needed, and reads
// the index of every pack in it.
func NewDiskStore(dir string) (*DiskStore, error) {
	s := &DiskStore{
		dir:     dir,
		index:   make(map[ChunkID]chunkInPack),
		packs:   make(map[string]bool),
		pending: make(map[ChunkID]*pendingChunk),
	}
	if err := os.MkdirAll(filepath.Join(dir, packsDir), 0o755); err != nil {
		return nil, fmt.Errorf("open chunk store: %w", err)
	}
	id, err := readStoreID(dir)
	if err != nil {
		return nil, fmt.Errorf("open chunk store: %w", err)
	}
	s.id = id
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readNewPacks(true); err != nil {
		return nil, fmt.Errorf("open chunk store: %w", err)
	}
	return s, nil
}

// readNewPacks adds to the index the packs not read yet: at open, and
// later those another process sharing the directory wrote. At open
// (cleanup) it also removes what dead writers left: temporary files old
// enough that no writer can still be busy with them, and damaged packs.
// s.mu is held.
func (s *DiskStore) readNewPacks(cleanup bool) error {
	// Every pack the log names from here on was renamed into place after
	// this: the listing may find it too.
	logOff := s.logSize()
	entries, err := os.ReadDir(filepath.Join(s.dir, packsDir))
	if err != nil {
		return err
	}
	var read []packIndex
	total := 0
	var cache map[string][]packEntry
	if len(s.packs) == 0 {
		cache = loadPackCache(s.dir)
	}
	fresh := 0
	for _, e := range entries {
		name := e.Name()
		if s.packs[name] {
			continue
		}
		p := filepath.Join(s.dir, packsDir, name)
		if !strings.HasSuffix(name, packSuffix) {
			if fi, err := e.Info(); cleanup && err == nil && time.Since(fi.ModTime()) > time.Hour {
				_ = os.Remove(p) // best effort: only a leftover
			}
			continue
		}
		s.packs[name] = true
		if idx, ok := cache[name]; ok {
			read = append(read, packIndex{name: name, idx: idx})
			total += len(idx)
			continue
		}
		fresh++
		idx, mtime, err := readPackIndex(p)
		if err != nil {
			// A damaged pack holds nothing we can trust: its chunks will
			// be fetched again.
			if cleanup {
				_ = os.Remove(p) // best effort
			}
			continue
		}
		read = append(read, packIndex{name, idx, mtime})
		total += len(idx)
	}
	if len(s.index) == 0 && total > 0 {
		s.index = make(map[ChunkID]chunkInPack, total) // a big store opens without rehashing
	}
	s.addPacks(read)
	s.logOff = logOff
	if fresh >= packCacheAfter {
		s.savePackCache()
	}
	return nil
}

// packIndex is the index of one pack, by name, and the pack's
// modification time when it was read from the pack itself.
type packIndex struct {
	name  string
	idx   []packEntry
	mtime time.Time
}

// addPacks adds the packs' chunks to the index; a chunk already there
// stays where it was. A pack's modification time, where it was read,
// counts as its last refresh (see refreshed): Missing need not move the
// time of a pack another process wrote moments ago, which every node
// sharing a store would otherwise do for each new pack. s.mu is held.
func (s *DiskStore) addPacks(read []packIndex) {
	for _, r := range read {
		if r.mtime.After(s.refreshed[r.name]) {
			if s.refreshed == nil {
				s.refreshed = make(map[string]time.Time)
			}
			s.refreshed[r.name] = r.mtime
		}
		for _, c := range r.idx {
			if _, ok := s.index[c.id]; !ok {
				s.index[c.id] = chunkInPack{pack: r.name, off: c.off, size: c.size}
			}
		}
	}
}

// readNewPacksLocked is readNewPacks for a caller not holding s.mu.
func (s *DiskStore) readNewPacksLocked() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readNewPacks(false)
}

// lookup finds id, reading the packs other processes added when it is
// not in the index yet. s.mu is held.
func (s *DiskStore) lookup(id ChunkID) (chunkInPack, bool) {
	if loc, ok := s.index[id]; ok {
		return loc, true
	}
	if s.readLoggedPacks() != nil {
		return chunkInPack{}, false
	}
	loc, ok := s.index[id]
	return loc, ok
}

type packEntry struct {
	id        ChunkID
	off, size int64
}

// readPackIndex reads the index at the end of a pack file, and returns it
// with the pack's modification time.
func readPackIndex(path string) ([]packEntry, time.Time, error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close() // read only
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	size := fi.Size()
	if size < packFooterSize {
		return nil, time.Time{}, errors.New("pack too short")
	}
	var footer [packFooterSize]byte
	if _, err := f.ReadAt(footer[:], size-packFooterSize); err != nil {
		return nil, time.Time{}, err
	}
	if string(footer[8:]) != packMagic {
		return nil, time.Time{}, errors.New("not a pack")
	}
	n := binary.BigEndian.Uint64(footer[:8])
	if n > uint64(size/packEntrySize) {
		return nil, time.Time{}, errors.New("bad pack index")
	}
	idxStart := size - packFooterSize - int64(n)*packEntrySize
	buf := make([]byte, int64(n)*packEntrySize)
	if _, err := f.ReadAt(buf, idxStart); err != nil {
		return nil, time.Time{}, err
	}
	entries := make([]packEntry, n)
	for i := range entries {
		b := buf[i*packEntrySize:]
		copy(entries[i].id[:], b[:32])
		entries[i].off = int64(binary.BigEndian.Uint64(b[32:40]))
		entries[i].size = int64(binary.BigEndian.Uint64(b[40:48]))
		if entries[i].off < 0 || entries[i].size < 0 || entries[i].off+entries[i].size > idxStart {
			return nil, time.Time{}, errors.New("bad pack index")
		}
	}
	return entries, fi.ModTime(), nil
}

// Dir returns the store's directory.
func (s *DiskStore) Dir() string { return s.dir }

// Missing returns those of ids that are not in the store. The packs of
// those it finds count as new for RetainSince from then on (see
// refreshed), so that a chunk a client was told is here stays while the
// client names it in a manifest.
func (s *DiskStore) Missing(ctx context.Context, ids []ChunkID) ([]ChunkID, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var touch []string
	defer func() {
		// Outside the lock: the in-memory mark already holds off this
		// process's RetainSince; the file's time tells other processes.
		for _, pack := range touch {
			now := time.Now()
			_ = os.Chtimes(filepath.Join(s.dir, packsDir, pack), now, now) // best effort: a pack just removed
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	lastPack := ""
	found := func(pack string) {
		if pack == lastPack {
			return // chunks of one file mostly share a pack
		}
		lastPack = pack
		if now.Sub(s.refreshed[pack]) < refreshEvery {
			return
		}
		if s.refreshed == nil {
			s.refreshed = make(map[string]time.Time)
		}
		s.refreshed[pack] = now
		touch = append(touch, pack)
	}
	var missing []ChunkID
	refreshed := false
	for _, id := range ids {
		if loc, ok := s.index[id]; ok {
			found(loc.pack)
			continue
		}
		if !refreshed {
			// Once per call: another process may have added packs.
			refreshed = true
			if s.readLoggedPacks() == nil {
				if loc, ok := s.index[id]; ok {
					found(loc.pack)
					continue
				}
			}
		}
		missing = append(missing, id)
	}
	return missing, nil
}

// Get opens chunk id. For a chunk that a Fetcher is bringing in, Get waits
// until it lands, the fetch gives up, ctx ends or MaxWait passes.
func (s *DiskStore) Get(ctx context.Context, id ChunkID) (io.ReadCloser, error) {
	s.mu.Lock()
	p := s.pending[id]
	loc, ok := s.index[id]
	if !ok && p == nil {
		loc, ok = s.lookup(id)
	}
	s.mu.Unlock()
	if !ok && p != nil {
		wait := s.MaxWait
		if wait <= 0 {
			wait = 2 * time.Minute
		}
		t := time.NewTimer(wait)
		select {
		case <-p.done:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
		s.mu.Lock()
		loc, ok = s.index[id]
		s.mu.Unlock()
	}
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", id, ErrChunkNotFound)
	}
	f, err := openFile(filepath.Join(s.dir, packsDir, loc.pack), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		// Another process sharing the directory removed the pack (and may
		// have stored the chunk again since): forget the pack, look again.
		s.mu.Lock()
		s.forgetPack(loc.pack)
		again, ok := s.lookup(id)
		s.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("chunk %s: %w (its pack was removed)", id, ErrChunkNotFound)
		}
		loc = again
		f, err = openFile(filepath.Join(s.dir, packsDir, loc.pack), os.O_RDONLY, 0)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("chunk %s: %w (its pack was removed)", id, ErrChunkNotFound)
		}
		return nil, fmt.Errorf("read chunk %s: %w", id, err)
	}
	return &packReader{f: f, r: io.NewSectionReader(f, loc.off, loc.size), off: loc.off, size: loc.size}, nil
}

// forgetPack drops a pack that is gone from the index. s.mu is held.
func (s *DiskStore) forgetPack(pack string) {
	for id, loc := range s.index {
		if loc.pack == pack {
			delete(s.index, id)
		}
	}
	delete(s.packs, pack)
}

// packReader reads one chunk out of a pack.
type packReader struct {
	f         *os.File
	r         *io.SectionReader
	off, size int64
}

func (p *packReader) Read(b []byte) (int, error) { return p.r.Read(b) }
func (p *packReader) Close() error               { return p.f.Close() }

// Size returns the chunk's length.
func (p *packReader) Size() int64 { return p.size }

// fileSection lets a copy into a file stay in the kernel.
func (p *packReader) fileSection() (*os.File, int64, int64) { return p.f, p.off, p.size }

// fileSectioner is a chunk reader whose bytes are a section of a file.
type fileSectioner interface {
	fileSection() (f *os.File, off, size int64)
}

// copyChunkTo copies a chunk reader into dst, in the kernel when the chunk
// is a section of a file; buf lends a buffer to what the kernel cannot
// copy.
func copyChunkTo(dst *os.File, rc io.Reader, buf *copyBuffer) (int64, error) {
	if fsec, ok := rc.(fileSectioner); ok {
		f, off, size := fsec.fileSection()
		n := copyRange(dst, f, off, size)
		if n == size {
			return n, nil
		}
		m, err := io.CopyBuffer(onlyWriter{dst}, io.NewSectionReader(f, off+n, size-n), buf.get(size-n))
		return n + m, err
	}
	if f, ok := rc.(*os.File); ok {
		return io.Copy(dst, f)
	}
	return io.CopyBuffer(dst, onlyReader{rc}, buf.get(-1))
}

// onlyReader hides every method but Read, so io.CopyBuffer uses its buffer.
type onlyReader struct{ io.Reader }

// onlyWriter hides every method but Write, so io.CopyBuffer uses its buffer.
type onlyWriter struct{ io.Writer }

// copyBufPool holds the buffers chunks are copied through.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

const copyBufSize = 1 << 20

// copyBuffer lends a writer of files a buffer from copyBufPool when a copy
// first needs one, and a small one of its own for a small copy: most
// copies stay in the kernel, and a buffer the pool must make afresh costs
// its page faults (about 3 ms for 1 MB), more than a re-sync of one file.
type copyBuffer struct {
	pooled *[]byte
	small  []byte
}

// get returns a buffer for a copy of n bytes (n < 0: unknown).
func (c *copyBuffer) get(n int64) []byte {
	switch {
	case c.pooled != nil:
		return *c.pooled
	case n >= 0 && n <= smallCopy:
		if c.small == nil {
			c.small = make([]byte, smallCopy)
		}
		return c.small
	}
	c.pooled = copyBufPool.Get().(*[]byte)
	return *c.pooled
}

// smallCopy is the largest copy copyBuffer serves without the pool.
const smallCopy = 32 << 10

// release gives the pooled buffer back.
func (c *copyBuffer) release() {
	if c.pooled != nil {
		copyBufPool.Put(c.pooled)
		c.pooled = nil
	}
}

// Put stores one chunk, as a pack of one.
func (s *DiskStore) Put(ctx context.Context, id ChunkID, r io.Reader) error {
	s.mu.Lock()
	_, ok := s.index[id]
	s.mu.Unlock()
	if ok {
		return nil
	}
	b := s.newBatch()
	if err := b.Put(ctx, id, r); err != nil {
		b.Abort()
		return err
	}
	return b.Commit()
}

// Expect marks ids as on their way in, for Get to wait on.
func (s *DiskStore) Expect(ids []ChunkID) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := make(map[ChunkID]*pendingChunk, len(ids))
	for _, id := range ids {
		if _, ok := s.index[id]; ok || held[id] != nil {
			continue
		}
		p := s.pending[id]
		if p == nil {
			p = &pendingChunk{done: make(chan struct{})}
			s.pending[id] = p
		}
		p.refs++
		held[id] = p
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for id, p := range held {
				p.refs--
				if p.refs == 0 && s.pending[id] == p {
					close(p.done)
					delete(s.pending, id)
				}
			}
		})
	}
}

// Retain removes the packs none of whose chunks keep accepts, and returns
// how many chunks went with them. A pack holding a chunk still wanted is
// kept whole. Use it to bound the store: keep the chunks of the manifests
// still wanted. Do not run it while a Fetch or Apply uses the store; on a
// directory other processes share, they must not need what keep rejects.
func (s *DiskStore) Retain(ctx context.Context, keep func(ChunkID) bool) (int, error) {
	return s.RetainSince(ctx, keep, time.Time{})
}

// RetainSince is Retain that also keeps every pack written after since,
// or holding a chunk that Missing reported present since (a zero since
// keeps none for its age): chunks of an upload whose use is not recorded
// yet.
func (s *DiskStore) RetainSince(ctx context.Context, keep func(ChunkID) bool, since time.Time) (int, error) {
	if err := s.readNewPacksLocked(); err != nil {
		return 0, fmt.Errorf("prune chunk store: %w", err)
	}
	s.mu.Lock()
	byPack := make(map[string][]ChunkID)
	for id, loc := range s.index {
		byPack[loc.pack] = append(byPack[loc.pack], id)
	}
	s.mu.Unlock()
	removed := 0
	for pack, ids := range byPack {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		wanted := false
		for _, id := range ids {
			if keep(id) {
				wanted = true
				break
			}
		}
		if wanted {
			continue
		}
		if !since.IsZero() {
			fi, err := os.Stat(filepath.Join(s.dir, packsDir, pack))
			if err != nil || fi.ModTime().After(since) {
				continue
			}
		}
		s.mu.Lock()
		if !since.IsZero() && s.refreshed[pack].After(since) {
			s.mu.Unlock()
			continue // a client was just told its chunks are here
		}
		for _, id := range ids {
			delete(s.index, id)
		}
		delete(s.packs, pack)
		delete(s.refreshed, pack)
		s.mu.Unlock()
		if err := os.Remove(filepath.Join(s.dir, packsDir, pack)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("prune chunk store: %w", err)
		}
		removed += len(ids)
	}
	return removed, nil
}
