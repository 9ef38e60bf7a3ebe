package transfer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// entry is what a test compares about one path of a tree.
type entry struct {
	Type  string // "dir", "file", "link"
	Mode  fs.FileMode
	Data  string
	Link  string
	MTime int64 // seconds; not compared for links
}

// snapshot reads the tree under dir, keyed by "/"-separated relative path.
func snapshot(t *testing.T, dir string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{Mode: fi.Mode() &^ fs.ModeType, MTime: fi.ModTime().Unix()}
		switch {
		case fi.IsDir():
			e.Type = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = "link"
			e.Mode, e.MTime = 0, 0
			if e.Link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			e.Type = "file"
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Data = string(b)
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

// writeTree creates files from a map of relative path → content; a path
// ending in "/" is a directory, content "->target" a symbolic link.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if rel[len(rel)-1] == '/' {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if len(data) > 2 && data[:2] == "->" {
			if err := os.Symlink(data[2:], p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// makeWritable lets t.TempDir's cleanup remove read-only directories.
func makeWritable(t *testing.T, dir string) {
	t.Cleanup(func() {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// randomTree builds a random tree: nested directories with assorted
// modes, files with random content and modes, and symbolic links
// (relative, absolute, dangling).
func randomTree(t *testing.T, dir string, r *rand.Rand) {
	t.Helper()
	makeWritable(t, dir)
	fileModes := []fs.FileMode{0o644, 0o755, 0o600, 0o400, 0o640 | fs.ModeSetgid}
	dirModes := []fs.FileMode{0o755, 0o700, 0o750, 0o555}
	var dirs []string
	var mk func(rel string, depth int)
	mk = func(rel string, depth int) {
		abs := filepath.Join(dir, rel)
		n := 1 + r.IntN(5)
		for i := range n {
			name := fmt.Sprintf("f%d-%d.txt", depth, i)
			data := make([]byte, r.IntN(3000))
			for j := range data {
				data[j] = byte(r.IntN(256))
			}
			p := filepath.Join(abs, name)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, fileModes[r.IntN(len(fileModes))]); err != nil {
				t.Fatal(err)
			}
			mt := time.Unix(1_600_000_000+r.Int64N(100_000_000), 0)
			if err := os.Chtimes(p, mt, mt); err != nil {
				t.Fatal(err)
			}
		}
		links := []string{"f0-0.txt", "../x", "/etc/hostname", "missing/target"}
		if r.IntN(2) == 0 {
			if err := os.Symlink(links[r.IntN(len(links))], filepath.Join(abs, "link")); err != nil {
				t.Fatal(err)
			}
		}
		if depth < 3 {
			for i := range r.IntN(3) {
				sub := filepath.Join(rel, fmt.Sprintf("d%d", i))
				if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
					t.Fatal(err)
				}
				mk(sub, depth+1)
				dirs = append(dirs, sub)
			}
		}
	}
	mk("", 0)
	// Modes and mtimes of directories last, deepest first, so that
	// filling them does not change them.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		p := filepath.Join(dir, d)
		mt := time.Unix(1_600_000_000+r.Int64N(100_000_000), 0)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, dirModes[r.IntN(len(dirModes))]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPackUnpackRoundTrip(t *testing.T) {
	t.Parallel()
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			src := t.TempDir()
			randomTree(t, src, rand.New(rand.NewPCG(seed, 42)))
			var buf bytes.Buffer
			st, err := Pack(context.Background(), src, &buf)
			if err != nil {
				t.Fatalf("Pack: %v", err)
			}
			dest := filepath.Join(t.TempDir(), "a", "b", "tree")
			makeWritable(t, filepath.Dir(dest))
			if err := Unpack(context.Background(), bytes.NewReader(buf.Bytes()), dest, false); err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			want, got := snapshot(t, src), snapshot(t, dest)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("unpacked tree differs (-want +got):\n%s", diff)
			}
			var files, dirs, links int
			for _, e := range want {
				switch e.Type {
				case "file":
					files++
				case "dir":
					dirs++
				case "link":
					links++
				}
			}
			if st.Files != files || st.Dirs != dirs || st.Symlinks != links {
				t.Errorf("Stats = %+v, want %d files, %d dirs, %d links", st, files, dirs, links)
			}
			if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("dest mode = %v, %v; want 0755", fi.Mode(), err)
			}
			// Deterministic: packing again gives the same bytes.
			var again bytes.Buffer
			if _, err := Pack(context.Background(), src, &again); err != nil {
				t.Fatalf("Pack again: %v", err)
			}
			if !bytes.Equal(buf.Bytes(), again.Bytes()) {
				t.Errorf("Pack is not deterministic: %d and %d bytes differ", buf.Len(), again.Len())
			}
		})
	}
}

// archiveNames lists the entry names of a tar.gz.
func archiveNames(t *testing.T, b []byte) []string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("entry %s has an owner: %d:%d %q:%q", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		names = append(names, h.Name)
	}
}

func packNames(t *testing.T, files map[string]string) []string {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, files)
	var buf bytes.Buffer
	if _, err := Pack(context.Background(), dir, &buf); err != nil {
		t.Fatalf("Pack: %v", err)
	}
	return archiveNames(t, buf.Bytes())
}

func TestPackIgnoreFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name: "gitignore at root and nested, git dir, info exclude",
			files: map[string]string{
				".git/HEAD":         "ref",
				".git/info/exclude": "secret.txt\n",
				".gitignore":        "*.log\n/build/\n!keep.log\n",
				"a.py":              "x",
				"app.log":           "x",
				"keep.log":          "x",
				"secret.txt":        "x",
				"build/out.o":       "x",
				"src/build/gen.go":  "x",
				"src/.gitignore":    "/gen/\n*.tmp\n",
				"src/gen/x.go":      "x",
				"src/a.tmp":         "x",
				"src/deep/gen/y.go": "x",
				"other/a.tmp":       "x",
			},
			want: []string{
				".gitignore", "a.py", "keep.log", "other/", "other/a.tmp",
				"src/", "src/.gitignore", "src/build/", "src/build/gen.go",
				"src/deep/", "src/deep/gen/", "src/deep/gen/y.go",
			},
		},
		{
			name: "skyignore replaces gitignore",
			files: map[string]string{
				".skyignore":   "data/\n",
				".gitignore":   "*.py\n",
				"a.py":         "x",
				"data/big.bin": "x",
				"sub/.git":     "gitdir: ../.git/modules/sub",
			},
			want: []string{".gitignore", ".skyignore", "a.py", "sub/"},
		},
		{
			name: "excluded dir cannot be re-included",
			files: map[string]string{
				".gitignore":   "out/\n!out/keep\n",
				"out/keep":     "x",
				"out/drop":     "x",
				"outside/keep": "x",
			},
			want: []string{".gitignore", "outside/", "outside/keep"},
		},
		{
			name: "symlinks are kept, not followed",
			files: map[string]string{
				"real/f":  "x",
				"ln":      "->real",
				"abs":     "->/etc",
				"dangles": "->nowhere",
			},
			want: []string{"abs", "dangles", "ln", "real/", "real/f"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, packNames(t, tt.files)); diff != "" {
				t.Errorf("archive names (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPackFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "model.bin")
	if err := os.WriteFile(src, []byte("weights"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "latest")
	if err := os.Symlink("model.bin", link); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := PackFile(context.Background(), link, &buf); err != nil {
		t.Fatalf("PackFile: %v", err)
	}
	if diff := cmp.Diff([]string{"latest"}, archiveNames(t, buf.Bytes())); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	dest := filepath.Join(t.TempDir(), "x", "ckpt.bin")
	if err := Unpack(context.Background(), bytes.NewReader(buf.Bytes()), dest, true); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	b, err := os.ReadFile(dest)
	if err != nil || string(b) != "weights" {
		t.Errorf("dest content = %q, %v; want %q", b, err, "weights")
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o640 {
		t.Errorf("dest mode = %v, want 0640", fi.Mode())
	}
	if err := PackFile(context.Background(), dir, io.Discard); err == nil {
		t.Errorf("PackFile(directory) succeeded, want an error")
	}
}

func TestPackCancelled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a": "x", "b/c": "y"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Pack(ctx, dir, io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("Pack with cancelled context: %v, want context.Canceled", err)
	}
}
