package fswatch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFirstQueryFullThenQuiet(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{})
	root := newRoot(t)
	writeFile(t, root, "a/f", "x")
	tok := d.register(t, root)
	tok2 := d.wantPaths(t, root, tok)
	d.wantPaths(t, root, tok2)
	d.wantPaths(t, root, tok) // an older token still works
}

func TestReportsChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		op   func(t *testing.T, root string)
		want []string
	}{
		{"write", func(t *testing.T, root string) { writeFile(t, root, "f", "new") }, []string{"f"}},
		{"create", func(t *testing.T, root string) { writeFile(t, root, "g", "new") }, []string{".", "g"}},
		{"remove", func(t *testing.T, root string) { must(t, os.Remove(filepath.Join(root, "f"))) }, []string{".", "f"}},
		{"chmod", func(t *testing.T, root string) { must(t, os.Chmod(filepath.Join(root, "f"), 0o600)) }, []string{"f"}},
		{"rename", func(t *testing.T, root string) {
			must(t, os.Rename(filepath.Join(root, "f"), filepath.Join(root, "h")))
		}, []string{".", "f", "h"}},
		{"rename over", func(t *testing.T, root string) {
			must(t, os.Rename(filepath.Join(root, "f"), filepath.Join(root, "sub/f")))
		}, []string{".", "f", "sub", "sub/f"}},
		{"write below", func(t *testing.T, root string) { writeFile(t, root, "sub/f", "new") }, []string{"sub/f"}},
		{"create below", func(t *testing.T, root string) { writeFile(t, root, "sub/g", "new") }, []string{"sub", "sub/g"}},
		{"mkdir", func(t *testing.T, root string) { must(t, os.Mkdir(filepath.Join(root, "e"), 0o755)) }, []string{".", "e"}},
		{"rmdir", func(t *testing.T, root string) { must(t, os.RemoveAll(filepath.Join(root, "sub"))) }, []string{".", "sub", "sub/f"}},
		{"symlink", func(t *testing.T, root string) { must(t, os.Symlink("f", filepath.Join(root, "ln"))) }, []string{".", "ln"}},
		{"chmod dir", func(t *testing.T, root string) { must(t, os.Chmod(filepath.Join(root, "sub"), 0o700)) }, []string{"sub"}},
		{"several", func(t *testing.T, root string) {
			for i := range 3 {
				writeFile(t, root, "f", fmt.Sprint(i))
				writeFile(t, root, "sub/f", fmt.Sprint(i))
			}
		}, []string{"f", "sub/f"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := startDaemon(t, Options{})
			root := newRoot(t)
			writeFile(t, root, "f", "old")
			writeFile(t, root, "sub/f", "old")
			tok := d.register(t, root)
			tt.op(t, root)
			tok = d.wantPaths(t, root, tok, tt.want...)
			d.wantPaths(t, root, tok)
		})
	}
}

func TestNewDirectoriesAreWatchedAtOnce(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{})
	root := newRoot(t)
	tok := d.register(t, root)
	// Files made in a new directory before its watch exists are found.
	for i := range 20 {
		top := fmt.Sprintf("a%d", i)
		must(t, os.MkdirAll(filepath.Join(root, top, "b", "c"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, top, "b", "c", "f"), []byte("x"), 0o644))
		tok = d.wantPaths(t, root, tok, ".", top, top+"/b", top+"/b/c", top+"/b/c/f")
		writeFile(t, root, top+"/b/c/f", "y")
		tok = d.wantPaths(t, root, tok, top+"/b/c/f")
	}
}

func TestRenamedDirectory(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{})
	root := newRoot(t)
	writeFile(t, root, "d/x/y/f", "old")
	tok := d.register(t, root)
	must(t, os.Rename(filepath.Join(root, "d"), filepath.Join(root, "e")))
	tok = d.wantPaths(t, root, tok, ".", "d", "e", "e/x", "e/x/y", "e/x/y/f")
	writeFile(t, root, "e/x/y/f", "new")
	tok = d.wantPaths(t, root, tok, "e/x/y/f")
	writeFile(t, root, "e/x/g", "new")
	d.wantPaths(t, root, tok, "e/x", "e/x/g")
	d.wantWatched(t, root, ".", "e", "e/x", "e/x/y")
}

func TestDirectoryMovedInAndOut(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{})
	root, outside := newRoot(t), newRoot(t)
	writeFile(t, outside, "in/x/f", "old")
	writeFile(t, root, "out/y/f", "old")
	tok := d.register(t, root)
	must(t, os.Rename(filepath.Join(outside, "in"), filepath.Join(root, "in")))
	must(t, os.Rename(filepath.Join(root, "out"), filepath.Join(outside, "out")))
	tok = d.wantPaths(t, root, tok, ".", "in", "in/x", "in/x/f", "out")
	writeFile(t, outside, "out/y/f", "new") // no longer ours
	writeFile(t, root, "in/x/f", "new")
	d.wantPaths(t, root, tok, "in/x/f")
}

func TestTokens(t *testing.T) {
	t.Parallel()
	d, other := startDaemon(t, Options{}), startDaemon(t, Options{})
	root := newRoot(t)
	tok := d.register(t, root)
	other.register(t, root)
	other.wantFull(t, root, tok, "the token is from another daemon instance")
	for _, bad := range []string{"garbage", d.id + ":x", d.id + ":-1", d.id + ":99999999"} {
		c := d.query(t, root, bad)
		if !c.Full || c.Paths != nil {
			t.Errorf("token %q: answer = %+v, want Full", bad, c)
		}
	}
	d.wantFull(t, root, "", "no token")
	d.wantPaths(t, root, tok)
}

func TestGitDirectoriesIgnored(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{})
	root := newRoot(t)
	writeFile(t, root, ".git/objects/ab/cd", "x")
	writeFile(t, root, "sub/.git/HEAD", "x")
	writeFile(t, root, "sub/f", "x")
	tok := d.register(t, root)
	writeFile(t, root, ".git/index", "y")
	writeFile(t, root, ".git/objects/ef/gh", "y")
	writeFile(t, root, "sub/.git/HEAD", "y")
	must(t, os.RemoveAll(filepath.Join(root, "sub/.git")))
	writeFile(t, root, "new/.git/config", "y")
	writeFile(t, root, "sub/f", "y")
	d.wantPaths(t, root, tok, ".", "new", "sub", "sub/f")
	d.wantWatched(t, root, ".", "sub", "new")
}

func TestSymlinksNotFollowed(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{})
	root, outside := newRoot(t), newRoot(t)
	writeFile(t, outside, "sub/f", "x")
	must(t, os.Symlink(outside, filepath.Join(root, "ln")))
	tok := d.register(t, root)
	must(t, os.Symlink(outside, filepath.Join(root, "ln2")))
	writeFile(t, outside, "sub/f", "y")
	writeFile(t, outside, "g", "y")
	d.wantPaths(t, root, tok, ".", "ln2")
	d.wantWatched(t, root, ".")
}

func TestNestedRoots(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{})
	outer := newRoot(t)
	inner := filepath.Join(outer, "in")
	writeFile(t, outer, "in/sub/f", "x")
	outerTok := d.register(t, outer)
	innerTok := d.register(t, inner)
	writeFile(t, outer, "in/sub/f", "y")
	writeFile(t, outer, "g", "y")
	outerTok = d.wantPaths(t, outer, outerTok, ".", "g", "in/sub/f")
	innerTok = d.wantPaths(t, inner, innerTok, "sub/f")

	// The inner root renamed away: the outer one sees it go, the inner one
	// is forgotten and answers Full again once it is back.
	must(t, os.Rename(inner, filepath.Join(outer, "in2")))
	outerTok = d.wantPaths(t, outer, outerTok, ".", "in", "in2", "in2/sub", "in2/sub/f")
	must(t, os.Mkdir(inner, 0o755))
	if c := d.query(t, inner, innerTok); !c.Full {
		t.Errorf("inner root after it was replaced: %+v, want Full", c)
	}
	writeFile(t, outer, "in2/sub/f", "z")
	d.wantPaths(t, outer, outerTok, ".", "in", "in2/sub/f")
}

func TestRootReplaced(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{})
	parent := newRoot(t)
	root := filepath.Join(parent, "a", "root")
	writeFile(t, root, "f", "x")
	tok := d.register(t, root)
	// Renaming a directory above the root raises no event we watch.
	must(t, os.Rename(filepath.Join(parent, "a"), filepath.Join(parent, "b")))
	writeFile(t, root, "f", "y")
	d.wantFull(t, root, tok, "first query for this root")
	must(t, os.RemoveAll(root))
	if _, err := Query(t.Context(), d.sock, root, tok); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("query about a removed root: %v, want no such file", err)
	}
}

func TestRootMustBeAResolvedDirectory(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, Options{})
	root := newRoot(t)
	writeFile(t, root, "f", "x")
	must(t, os.Symlink(root, filepath.Join(root, "ln")))
	for _, bad := range []string{"relative", root + "/", root + "/f", root + "/ln", root + "/missing"} {
		if c, err := Query(t.Context(), d.sock, bad, ""); err == nil {
			t.Errorf("query about %q = %+v, want an error", bad, c)
		}
	}
	if diff := cmp.Diff(map[string]bool{d.stateDir[1:]: true}, d.watched("/")); diff != "" {
		t.Errorf("watched directories after failed queries (-want +got):\n%s", diff)
	}
}
