package mounts

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// cache is MOUNT_CACHED's local copy of the bucket: whole files on disk,
// fetched in parallel chunks on first open and read as they arrive; files
// written are journaled and uploaded in the background.
//
// An entry's life:
//
//	          open (not cached)                 first write / truncate / create
//	(none) ──────────────────► fetching ──► clean ────────────────────────────► dirty
//	                                          ▲  ◄──── upload done, same gen ────  │
//	                                          │                                    │ closed, WriteBack passed
//	 evicted (LRU, over CacheBytes, unused) ◄─┘                                    ▼
//	                                                                           uploading
//
// A dirty entry has a journal record (CacheDir/journal/*.json) written
// and synced before the change it announces, so a process that dies
// leaves every unuploaded file named on disk; openCache uploads them.
type cache struct {
	st         Store
	spec       MountSpec
	log        *slog.Logger
	dataDir    string
	journalDir string
	unlock     func() error

	ctx    context.Context // ended by close: stops fetches and uploads
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	entries  map[string]*centry // by key
	used     int64              // bytes of all entries' files
	useSeq   uint64             // counts uses; a clock can tie two uses
	changed  chan struct{}      // closed and replaced when upload state changes
	kick     chan struct{}      // wakes the pump
	flushing int                // Flush calls waiting: WriteBack is skipped
	active   int                // uploads running
	lastErr  error
	warned   bool // the over-cap warning was logged
}

type centry struct {
	key       string
	name      string   // data file, in dataDir
	f         *os.File // open read-write while the entry lives
	size      int64
	mtime     time.Time
	etag      string // the bucket's version a clean copy holds ("" unknown)
	dirty     bool   // changes not yet in the bucket; journaled
	gen       uint64 // bumped by every change
	uploading bool
	due       time.Time // upload not before
	attempts  int       // failed uploads in a row
	opens     int
	writers   int
	lastUse   uint64   // cache.useSeq at the last open or release: LRU order
	removed   bool     // unlinked or replaced: dropped once unused
	fetch     *fetcher // nil once the whole object is on disk
}

// journalRecord is one pending upload on disk.
type journalRecord struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	File   string `json:"file"`
}

func openCache(st Store, spec MountSpec, prefix string) (*cache, error) {
	dir := spec.CacheDir
	c := &cache{
		st: st, spec: spec,
		log:        spec.Logger.With("component", "mounts", "cache", dir),
		dataDir:    filepath.Join(dir, "data"),
		journalDir: filepath.Join(dir, "journal"),
		entries:    map[string]*centry{},
		changed:    make(chan struct{}),
		kick:       make(chan struct{}, 1),
	}
	for _, d := range []string{dir, c.dataDir, c.journalDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("cache directory %s: %w", dir, err)
		}
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	c.unlock = unlock
	if err := c.load(); err != nil {
		_ = unlock()
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Go(c.pump)
	return c, nil
}

// load reads the journal: its files are pending uploads. Data files it
// does not name are a previous run's clean copies, and go.
func (c *cache) load() error {
	recs, err := readJournal(c.journalDir)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	now := time.Now()
	for _, r := range recs {
		if r.rec.Bucket != c.st.URL() {
			return fmt.Errorf("cache directory %s holds uploads pending for %s, not %s: upload them first (mount that bucket with this cache) or use another cache directory",
				c.spec.CacheDir, r.rec.Bucket, c.st.URL())
		}
		f, err := os.OpenFile(filepath.Join(c.dataDir, r.rec.File), os.O_RDWR, 0)
		var fi os.FileInfo
		if err == nil {
			fi, err = f.Stat()
		}
		if err != nil {
			c.log.Error("a pending upload's cached file is gone: the bucket keeps its older version", "object", c.st.URL()+"/"+r.rec.Key, "err", err)
			os.Remove(r.path)
			continue
		}
		keep[r.rec.File] = true
		c.entries[r.rec.Key] = &centry{key: r.rec.Key, name: r.rec.File, f: f, size: fi.Size(), mtime: fi.ModTime(),
			dirty: true, gen: 1, due: now, lastUse: c.nextUse()}
		c.used += fi.Size()
	}
	if len(c.entries) > 0 {
		c.log.Info("resuming uploads left by an earlier run", "files", len(c.entries), "bytes", c.used)
	}
	ents, err := os.ReadDir(c.dataDir)
	if err != nil {
		return fmt.Errorf("cache directory %s: %w", c.spec.CacheDir, err)
	}
	for _, de := range ents {
		if !keep[de.Name()] {
			os.Remove(filepath.Join(c.dataDir, de.Name()))
		}
	}
	return nil
}

// close stops fetches and uploads (a running upload is abandoned and stays
// journaled) and releases the directory.
func (c *cache) close() error {
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	for _, ce := range c.entries {
		ce.f.Close()
	}
	c.entries = map[string]*centry{}
	c.mu.Unlock()
	return c.unlock()
}

// notifyLocked wakes Flush and the pump.
func (c *cache) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *cache) objectURL(key string) string { return c.st.URL() + "/" + key }

// markDirtyLocked records a change to ce before it is made.
func (c *cache) markDirtyLocked(ce *centry) error {
	ce.gen++
	ce.mtime = time.Now()
	if ce.dirty {
		return nil
	}
	if err := writeRecord(c.journalDir, journalRecord{Bucket: c.st.URL(), Key: ce.key, File: ce.name}); err != nil {
		return fmt.Errorf("journal a change to %s in %s: %w", ce.key, c.spec.CacheDir, err)
	}
	ce.dirty = true
	c.notifyLocked()
	return nil
}

// newEntryLocked makes an empty entry with its data file.
func (c *cache) newEntryLocked(key string) (*centry, error) {
	f, err := os.CreateTemp(c.dataDir, "obj-")
	if err != nil {
		return nil, fmt.Errorf("cache %s in %s: %w", key, c.spec.CacheDir, err)
	}
	ce := &centry{key: key, name: filepath.Base(f.Name()), f: f, lastUse: c.nextUse(), mtime: time.Now()}
	c.entries[key] = ce
	return ce, nil
}

// dropLocked forgets an entry; its file goes once no handle uses it.
func (c *cache) dropLocked(ce *centry) {
	if c.entries[ce.key] == ce {
		delete(c.entries, ce.key)
	}
	ce.removed = true
	c.releaseFileLocked(ce)
}

func (c *cache) releaseFileLocked(ce *centry) {
	if !ce.removed || ce.opens > 0 || ce.uploading || ce.f == nil {
		return
	}
	if ce.fetch != nil {
		ce.fetch.cancel()
	}
	ce.f.Close()
	ce.f = nil
	os.Remove(filepath.Join(c.dataDir, ce.name))
	c.used -= ce.size
}

// local returns what the cache knows of key that the bucket may not yet:
// its size and time while it has changes not uploaded or open writers.
func (c *cache) local(key string) (size int64, mtime time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ce := c.entries[key]
	if ce == nil || (!ce.dirty && ce.writers == 0) {
		return 0, time.Time{}, false
	}
	return ce.size, ce.mtime, true
}

// localUnder lists the names directly under dir (a prefix ending in "/",
// or "") that exist only in the cache so far; isDir for those with
// deeper keys.
func (c *cache) localUnder(dir string) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for k, ce := range c.entries {
		if (!ce.dirty && ce.writers == 0) || !strings.HasPrefix(k, dir) {
			continue
		}
		rest := k[len(dir):]
		if name, _, deeper := strings.Cut(rest, "/"); name != "" {
			out[name] = out[name] || deeper
		}
	}
	return out
}

// remove forgets key (unlink): a pending upload of it is dropped.
func (c *cache) remove(key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ce := c.entries[key]
	if ce == nil {
		return nil
	}
	if ce.dirty {
		ce.dirty = false
		if err := removeRecord(c.journalDir, key); err != nil {
			return err
		}
	}
	c.dropLocked(ce)
	c.notifyLocked()
	return nil
}

// rename moves a cached entry to a new key: it uploads under the new name
// and the caller deletes the old object. It reports false when old is not
// cached.
func (c *cache) rename(old, new string) (bool, error) {
	c.mu.Lock()
	ce := c.entries[old]
	c.mu.Unlock()
	if ce == nil {
		return false, nil
	}
	if err := c.waitFetched(ce); err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[old] != ce {
		return false, nil
	}
	if dst := c.entries[new]; dst != nil {
		if dst.dirty {
			dst.dirty = false
			if err := removeRecord(c.journalDir, new); err != nil {
				return false, err
			}
		}
		c.dropLocked(dst)
	}
	wasDirty := ce.dirty
	delete(c.entries, old)
	ce.key = new
	c.entries[new] = ce
	ce.dirty = false
	if err := c.markDirtyLocked(ce); err != nil {
		return false, err
	}
	if wasDirty {
		if err := removeRecord(c.journalDir, old); err != nil {
			return false, err
		}
	}
	if ce.writers == 0 {
		ce.due = time.Now().Add(c.spec.WriteBack)
	}
	c.notifyLocked()
	return true, nil
}

// evictLocked drops clean, unused entries, least recently used first,
// while the cache is over its cap.
func (c *cache) evictLocked() {
	if c.used <= c.spec.CacheBytes {
		c.warned = false
		return
	}
	var cands []*centry
	for _, ce := range c.entries {
		if ce.opens == 0 && !ce.dirty && !ce.uploading && (ce.fetch == nil || ce.fetch.failed() || ce.fetch.complete()) {
			cands = append(cands, ce)
		}
	}
	slices.SortFunc(cands, func(a, b *centry) int { return cmp.Compare(a.lastUse, b.lastUse) })
	for _, ce := range cands {
		if c.used <= c.spec.CacheBytes {
			return
		}
		c.dropLocked(ce)
	}
	if c.used > c.spec.CacheBytes && !c.warned {
		c.warned = true
		c.log.Warn("cache is over its size cap: its files are open or not yet uploaded", "used_bytes", c.used, "cap_bytes", c.spec.CacheBytes)
	}
}

func (c *cache) pendingLocked() UploadProgress {
	var p UploadProgress
	for _, ce := range c.entries {
		if !ce.dirty {
			continue
		}
		p.Files++
		p.Bytes += ce.size
		if ce.writers > 0 {
			p.Open++
		}
	}
	if c.lastErr != nil && p.Files > 0 {
		p.LastError = c.lastErr.Error()
	}
	return p
}

func (c *cache) pending() UploadProgress {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pendingLocked()
}

// nextUse stamps a use of an entry (c.mu held).
func (c *cache) nextUse() uint64 {
	c.useSeq++
	return c.useSeq
}
