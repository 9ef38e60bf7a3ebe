package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// node is what a test compares of one path.
type node struct {
	Type   string
	Mode   fs.FileMode
	Sum    string // files: content hash
	Size   int64
	Target string // links
	MTime  int64  // files and directories
}

// snapshot describes the tree under dir, leaving out paths for which skip
// returns true (and what is below them).
func treeSnapshot(t testing.TB, dir string, skip func(rel string) bool) map[string]node {
	t.Helper()
	out := make(map[string]node)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel != "." && skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n := node{Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
		switch {
		case fi.IsDir():
			n.Type = "dir"
			n.MTime = fi.ModTime().UnixNano()
		case fi.Mode()&fs.ModeSymlink != 0:
			n.Type = "link"
			n.Mode = 0
			n.Target, err = os.Readlink(p)
			if err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			n.Type = "file"
			n.Size = fi.Size()
			n.MTime = fi.ModTime().UnixNano()
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(data)
			n.Sum = hex.EncodeToString(s[:8])
		default:
			n.Type = "other"
		}
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// treeGen makes random trees and changes them.
type treeGen struct {
	rng *rand.Rand
	dir string
	// big makes some files span several chunks.
	big bool
	// seq gives every created name a fresh suffix.
	seq int
}

var (
	fileModes = []fs.FileMode{0o644, 0o600, 0o755, 0o444, 0o640 | fs.ModeSetgid, 0o700}
	dirModes  = []fs.FileMode{0o755, 0o700, 0o750, 0o775 | fs.ModeSetgid, 0o1777 & ^fs.FileMode(0o1000) | fs.ModeSticky}
)

func (g *treeGen) name(prefix string) string {
	g.seq++
	suffixes := []string{"", ".py", ".txt", ".tmp", ".log", ".dat", " sp", ".md"}
	return fmt.Sprintf("%s%d%s", prefix, g.seq, suffixes[g.rng.IntN(len(suffixes))])
}

func (g *treeGen) content() []byte {
	var n int
	switch r := g.rng.IntN(20); {
	case r == 0:
		n = 0
	case r == 1 && g.big:
		n = MinChunkSize*2 + g.rng.IntN(3<<20)
	case r < 5:
		n = g.rng.IntN(64 << 10)
	default:
		n = g.rng.IntN(2048)
	}
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := g.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// oldTime gives files a past mtime, so that every run sees the same kind
// of timestamps whatever the clock.
func (g *treeGen) oldTime() time.Time {
	return time.Unix(1_600_000_000+g.rng.Int64N(100_000_000), g.rng.Int64N(1e9))
}

func (g *treeGen) writeFile(t testing.TB, rel string) {
	t.Helper()
	p := filepath.Join(g.dir, filepath.FromSlash(rel))
	mustNo(t, os.WriteFile(p, g.content(), 0o644))
	mustNo(t, os.Chmod(p, fileModes[g.rng.IntN(len(fileModes))]))
	mt := g.oldTime()
	mustNo(t, os.Chtimes(p, mt, mt))
}

func (g *treeGen) fill(t testing.TB, rel string, depth int) {
	t.Helper()
	n := 1 + g.rng.IntN(6)
	for range n {
		switch r := g.rng.IntN(10); {
		case r < 6:
			g.writeFile(t, filepath.ToSlash(filepath.Join(rel, g.name("f"))))
		case r < 8 && depth < 3:
			sub := filepath.ToSlash(filepath.Join(rel, g.name("d")))
			mustNo(t, os.Mkdir(filepath.Join(g.dir, sub), 0o755))
			g.fill(t, sub, depth+1)
		case r < 9:
			g.symlink(t, filepath.ToSlash(filepath.Join(rel, g.name("l"))))
		default:
			sub := filepath.ToSlash(filepath.Join(rel, g.name("e")))
			mustNo(t, os.Mkdir(filepath.Join(g.dir, sub), 0o755)) // stays empty
		}
	}
}

func (g *treeGen) symlink(t testing.TB, rel string) {
	t.Helper()
	targets := []string{"../x", "/etc/hostname", "f1.py", "nowhere/at all", ".", "/tmp"}
	mustNo(t, os.Symlink(targets[g.rng.IntN(len(targets))], filepath.Join(g.dir, filepath.FromSlash(rel))))
}

// finish gives every directory a random mode and a fixed old mtime,
// deepest first.
func (g *treeGen) finish(t testing.TB) {
	t.Helper()
	var dirs []string
	mustNo(t, filepath.WalkDir(g.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() != ".git" && !strings.Contains(p, "/.git/") {
			dirs = append(dirs, p)
		}
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if d != g.dir {
			mustNo(t, os.Chmod(d, dirModes[g.rng.IntN(len(dirModes))]))
		}
		mt := g.oldTime()
		mustNo(t, os.Chtimes(d, mt, mt))
	}
}

// entries lists the paths under the root (not .git), sorted.
func (g *treeGen) entries(t testing.TB) []string {
	t.Helper()
	var out []string
	mustNo(t, filepath.WalkDir(g.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".git" {
			return filepath.SkipDir
		}
		if p != g.dir {
			rel, _ := filepath.Rel(g.dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	}))
	return out
}

// mutate makes n random changes: edits, appends, renames, deletions, new
// files and directories, mode changes, type changes, link retargets.
func (g *treeGen) mutate(t testing.TB, n int) {
	t.Helper()
	for range n {
		all := g.entries(t)
		if len(all) == 0 {
			g.fill(t, ".", 0)
			continue
		}
		rel := all[g.rng.IntN(len(all))]
		if strings.HasSuffix(rel, GitIgnoreFile) || strings.HasSuffix(rel, SkyIgnoreFile) {
			continue
		}
		p := filepath.Join(g.dir, filepath.FromSlash(rel))
		fi, err := os.Lstat(p)
		mustNo(t, err)
		switch r := g.rng.IntN(9); {
		case r == 0 && fi.Mode().IsRegular(): // edit
			g.writeFile(t, rel)
		case r == 1 && fi.Mode().IsRegular(): // append, keep mode
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			mustNo(t, err)
			_, err = f.Write([]byte("more"))
			mustNo(t, err)
			mustNo(t, f.Close())
		case r == 2: // rename
			q := filepath.Join(filepath.Dir(p), g.name("r"))
			mustNo(t, os.Rename(p, q))
		case r == 3: // delete
			mustNo(t, os.RemoveAll(p))
		case r == 4 && fi.IsDir(): // new content
			g.fill(t, rel, 2)
		case r == 5 && !fi.IsDir(): // mode
			if fi.Mode().IsRegular() {
				mustNo(t, os.Chmod(p, fileModes[g.rng.IntN(len(fileModes))]))
			}
		case r == 6: // file or link becomes a directory, or a directory a file
			mustNo(t, os.RemoveAll(p))
			if fi.IsDir() {
				g.writeFile(t, rel)
			} else {
				mustNo(t, os.Mkdir(p, 0o755))
				g.fill(t, rel, 2)
			}
		case r == 7: // becomes a link
			mustNo(t, os.RemoveAll(p))
			g.symlink(t, rel)
		case r == 8 && fi.Mode().IsRegular(): // same size and mtime, other content
			data, err := os.ReadFile(p)
			mustNo(t, err)
			if len(data) > 0 {
				data[0] ^= 0xff
				mustNo(t, os.WriteFile(p, data, 0))
				mustNo(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
			}
		}
	}
}

func mustNo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// memStore is a ChunkStore in memory.
type memStore struct {
	mu     sync.Mutex
	chunks map[ChunkID][]byte
}

func newMemStore() *memStore {
	return &memStore{chunks: map[ChunkID][]byte{}}
}

func (s *memStore) Missing(_ context.Context, ids []ChunkID) ([]ChunkID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ChunkID
	for _, id := range ids {
		if _, ok := s.chunks[id]; !ok {
			out = append(out, id)
		}
	}
	return out, nil
}

func (s *memStore) Get(_ context.Context, id ChunkID) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, ok := s.chunks[id]
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", id, ErrChunkNotFound)
	}
	return io.NopCloser(strings.NewReader(string(data))), nil
}

func (s *memStore) Put(_ context.Context, id ChunkID, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if HashChunk(data) != id {
		return fmt.Errorf("chunk %s: %w", id, ErrChunkCorrupt)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chunks[id] = data
	return nil
}

func osWriteFile(dir, name, data string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644)
}

// uploadTree describes src and uploads it to store, as the CLI does.
func uploadTree(t testing.TB, src string, store ChunkStore) *Tree {
	t.Helper()
	ctx := context.Background()
	tree, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
	mustNo(t, err)
	return tree
}
