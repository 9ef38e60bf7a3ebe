package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/zeebo/blake3"
)

// BuildOptions tunes BuildManifest.
type BuildOptions struct {
	// Cache, when set, lets unchanged files go unread; BuildManifest
	// updates it, and the caller saves it (StatCache.Save) after a
	// successful upload.
	Cache *StatCache
	// Progress receives "scan" progress once the tree has been walked.
	Progress ProgressFunc
	// Workers is how many files are read and hashed at once; zero means
	// one per CPU.
	Workers int
	// onChunks, when set, is told each file's chunks as soon as they are
	// known, with the file's absolute path (from several goroutines at
	// once): BuildAndUpload sends them while the rest is read.
	onChunks func(abs string, chunks []ChunkRef)
	// onChunkData, when set, is given each chunk read, with its bytes
	// (valid during the call only), from several goroutines at once.
	onChunkData func(ref ChunkRef, data []byte)
}

// BuildStats counts what BuildManifest found.
type BuildStats struct {
	Files    int   // regular files
	Dirs     int   // directories, the root included
	Symlinks int   // symbolic links, kept as links
	Bytes    int64 // bytes of the regular files
	Ignored  int   // entries left out by ignore rules or .git (a left-out directory counts once)
	Skipped  int   // entries of other types (sockets, devices, pipes)
	Read     int   // files read and hashed; the others came from the stat cache
	ReadSize int64 // bytes read
}

// Tree is a built manifest together with the files it was built from: it is
// the Source the client uploads chunks from.
type Tree struct {
	Manifest Manifest
	Stats    BuildStats

	root      string // absolute, symbolic links resolved
	recent    []int  // entries a Rebuild described again, looked in first
	indexOnce sync.Once
	chunks    map[ChunkID]chunkLoc // made by index, on first need
	exclude   stamp                // of .git/info/exclude, before the build (Snapshot)
	encoded   []byte               // the manifest's encoding, once an upload made it
	// change: what a Rebuild changed from its snapshot's manifest (Change);
	// nil for a tree BuildManifest described.
	change *Delta
}

// Change returns the delta from the manifest of the snapshot a Rebuild
// described this tree from (id base, which the caller takes before the
// Rebuild: it spends the snapshot) to this tree's (id). ok is false for
// a tree BuildManifest described.
func (t *Tree) Change(base, id ChunkID) (d Delta, ok bool) {
	if t.change == nil {
		return Delta{}, false
	}
	d = *t.change
	d.Base, d.Result = base, id
	return d, true
}

// chunkLoc is where a chunk's bytes are: in which entry, at what offset.
type chunkLoc struct {
	entry int
	off   int64
	size  int64
}

var _ Source = (*Tree)(nil)

// BuildManifest walks the tree at root and describes it: directories,
// regular files cut into content-defined chunks, symbolic links kept as
// links (not followed), other file types left out. Ignore rules are
// git's, read from .skyignore files when the root holds one, else from
// .gitignore files and .git/info/exclude; ".git" is always left out. If
// root is a symbolic link, what it points to is described; if it is a
// regular file, the manifest holds that one file as its root entry.
//
// Files are read in parallel, each streamed through a chunk-sized buffer.
// A file that changes while it is read is described as it was read.
func BuildManifest(ctx context.Context, root string, opts BuildOptions) (*Tree, error) {
	abs, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	if abs, err = filepath.Abs(abs); err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	if opts.Cache != nil {
		opts.Cache.begin(time.Now())
	}
	t := &Tree{root: abs, Manifest: Manifest{Version: ManifestVersion},
		exclude: stampOf(filepath.Join(abs, filepath.FromSlash(gitExclude)))}
	var infos []fs.FileInfo // per entry, for the files
	rootEntry := Entry{Path: RootPath, Mode: unixMode(fi.Mode()), MTime: fi.ModTime().UnixNano()}
	switch {
	case fi.Mode().IsRegular():
		rootEntry.Type = TypeFile
		t.Manifest.Entries = []Entry{rootEntry}
		infos = []fs.FileInfo{fi}
		t.Stats.Files++
	case fi.IsDir():
		rootEntry.Type = TypeDir
		// The last scan of this tree, where the cache has one, says about
		// how many entries to expect: its files, and some directories.
		files := opts.Cache.entries()
		hint := 1 + files + files/8
		t.Manifest.Entries = append(make([]Entry, 0, hint), rootEntry)
		infos = append(make([]fs.FileInfo, 0, hint), nil)
		t.Stats.Dirs++
		visit := func(rel string, fi fs.FileInfo) error {
			e, ok, err := t.describe(rel, fi)
			if err != nil || !ok {
				return err
			}
			t.Manifest.Entries = append(t.Manifest.Entries, e)
			if e.Type == TypeFile {
				infos = append(infos, fi)
			} else {
				infos = append(infos, nil)
			}
			return nil
		}
		workers := opts.Workers
		if workers <= 0 {
			workers = 2 * runtime.GOMAXPROCS(0)
		}
		if t.Stats.Ignored, err = walkTreeParallel(ctx, abs, workers, visit); err != nil {
			return nil, fmt.Errorf("scan %s: %w", root, err)
		}
	default:
		return nil, fmt.Errorf("scan %s: not a directory or regular file", root)
	}

	// The walk visits in no particular order; the manifest is in byte
	// order of paths.
	order := make([]int, len(t.Manifest.Entries))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return comparePaths(t.Manifest.Entries[a].Path, t.Manifest.Entries[b].Path)
	})
	entries := make([]Entry, len(order))
	sortedInfos := make([]fs.FileInfo, len(order))
	for i, j := range order {
		entries[i], sortedInfos[i] = t.Manifest.Entries[j], infos[j]
	}
	t.Manifest.Entries = entries

	if err := t.hashFiles(ctx, sortedInfos, opts); err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	if err := t.Manifest.Validate(); err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	return t, nil
}

// describe turns one walked entry into a manifest entry; ok is false for
// the types a manifest leaves out.
func (t *Tree) describe(rel string, fi fs.FileInfo) (Entry, bool, error) {
	if !utf8.ValidString(rel) {
		return Entry{}, false, fmt.Errorf("%q: the name is not valid UTF-8; rename it, or leave it out with %s", rel, SkyIgnoreFile)
	}
	e := Entry{Path: rel, Mode: unixMode(fi.Mode()), MTime: fi.ModTime().UnixNano()}
	switch {
	case fi.IsDir():
		e.Type = TypeDir
		t.Stats.Dirs++
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(filepath.Join(t.root, filepath.FromSlash(rel)))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return Entry{}, false, nil // removed while we walk
			}
			return Entry{}, false, fmt.Errorf("read link %s: %w", rel, err)
		}
		if !utf8.ValidString(target) {
			return Entry{}, false, fmt.Errorf("%q: the link target is not valid UTF-8; change it, or leave the link out with %s", rel, SkyIgnoreFile)
		}
		e = Entry{Path: rel, Type: TypeSymlink, Target: target}
		t.Stats.Symlinks++
	case fi.Mode().IsRegular():
		e.Type = TypeFile
		e.Size = fi.Size()
		t.Stats.Files++
	default:
		t.Stats.Skipped++
		return Entry{}, false, nil
	}
	return e, true, nil
}

// hashFiles fills in the chunks of every file entry, biggest files first
// so that the long ones do not start last.
func (t *Tree) hashFiles(ctx context.Context, infos []fs.FileInfo, opts BuildOptions) error {
	var files []int
	var total int64
	for i, fi := range infos {
		if fi != nil {
			files = append(files, i)
			total += fi.Size()
		}
	}
	slices.SortStableFunc(files, func(a, b int) int { return cmp.Compare(infos[b].Size(), infos[a].Size()) })
	m := newMeter(opts.Progress, "scan", len(files), total)
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, len(files)))

	var read, readBytes atomic.Int64
	err := eachParallel(ctx, workers, len(files), func(ctx context.Context, n int) error {
		i := files[n]
		e, fi := &t.Manifest.Entries[i], infos[i]
		abs := func() string {
			if e.Path == RootPath {
				return t.root
			}
			return filepath.Join(t.root, filepath.FromSlash(e.Path))
		}
		if opts.Cache != nil {
			if chunks, ok := opts.Cache.lookup(e.Path, fi); ok {
				e.Chunks = chunks
				if opts.onChunks != nil {
					opts.onChunks(abs(), chunks)
				}
				m.add(1, e.Size)
				return nil
			}
		}
		fc := chunkerPool.Get().(*fileChunker)
		fc.sink = opts.onChunkData
		chunks, size, err := chunkFile(ctx, fc, abs())
		fc.sink = nil
		chunkerPool.Put(fc)
		if errors.Is(err, fs.ErrNotExist) {
			// Removed after the walk: describe it as empty rather than
			// fail; the next sync drops it.
			chunks, size, err = nil, 0, nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", e.Path, err)
		}
		e.Chunks, e.Size = chunks, size
		if opts.onChunks != nil {
			opts.onChunks(abs(), chunks)
		}
		read.Add(1)
		readBytes.Add(size)
		if opts.Cache != nil && size == fi.Size() {
			opts.Cache.remember(e.Path, fi, chunks)
		}
		m.add(1, size)
		return nil
	})
	t.Stats.Read += int(read.Load())
	t.Stats.ReadSize += readBytes.Load()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, i := range files {
		t.Stats.Bytes += t.Manifest.Entries[i].Size
	}
	m.done()
	return nil
}

func chunkFile(ctx context.Context, fc *fileChunker, abs string) ([]ChunkRef, int64, error) {
	f, err := openFile(abs, os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close() // read only
	return fc.chunks(ctxReader{ctx, f})
}

// index records where each distinct chunk can be read.
func (t *Tree) index() {
	n := 0
	for i := range t.Manifest.Entries {
		n += len(t.Manifest.Entries[i].Chunks)
	}
	t.chunks = make(map[ChunkID]chunkLoc, n)
	for i := range t.Manifest.Entries {
		var off int64
		for _, c := range t.Manifest.Entries[i].Chunks {
			if _, ok := t.chunks[c.ID]; !ok {
				t.chunks[c.ID] = chunkLoc{entry: i, off: off, size: c.Size}
			}
			off += c.Size
		}
	}
}

// locate finds where chunk id can be read: first in the entries described
// again (a Rebuild's, whose chunks are most of what an upload sends), then
// in an index of every chunk, made on first need.
func (t *Tree) locate(id ChunkID) (chunkLoc, bool) {
	for _, i := range t.recent {
		var off int64
		for _, c := range t.Manifest.Entries[i].Chunks {
			if c.ID == id {
				return chunkLoc{entry: i, off: off, size: c.Size}, true
			}
			off += c.Size
		}
	}
	t.indexOnce.Do(t.index)
	loc, ok := t.chunks[id]
	return loc, ok
}

// Root returns the absolute path the tree was built from.
func (t *Tree) Root() string { return t.root }

// Missing returns those of ids that no file of the tree holds.
func (t *Tree) Missing(_ context.Context, ids []ChunkID) ([]ChunkID, error) {
	var missing []ChunkID
	for _, id := range ids {
		if _, ok := t.locate(id); !ok {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// ErrSourceChanged is wrapped by the error a Tree's chunk reader returns
// when a file no longer holds what BuildManifest read.
var ErrSourceChanged = errors.New("changed since it was scanned")

// Get reads chunk id from the file that holds it. The reader checks the
// bytes against id as they pass and fails, naming the file, when the file
// has changed since BuildManifest read it.
func (t *Tree) Get(_ context.Context, id ChunkID) (io.ReadCloser, error) {
	loc, ok := t.locate(id)
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", id, ErrChunkNotFound)
	}
	e := &t.Manifest.Entries[loc.entry]
	abs := t.root
	if e.Path != RootPath {
		abs = filepath.Join(t.root, filepath.FromSlash(e.Path))
	}
	f, err := openFile(abs, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", e.Path, err)
	}
	return &verifyingReader{f: f, r: io.NewSectionReader(f, loc.off, loc.size), h: blake3.New(), id: id, size: loc.size, name: e.Path}, nil
}

// verifyingReader reads one chunk from a source file and fails at its end
// if the bytes are not the chunk.
type verifyingReader struct {
	f    *os.File
	r    io.Reader
	h    *blake3.Hasher
	id   ChunkID
	n    int64
	size int64
	name string
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if errors.Is(err, io.EOF) {
		var got ChunkID
		v.h.Sum(got[:0])
		if v.n != v.size || got != v.id {
			return n, fmt.Errorf("%s %w; sync again", v.name, ErrSourceChanged)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.f.Close() }
