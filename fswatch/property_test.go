package fswatch

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRandomChanges makes random changes to a tree over several rounds and
// checks, after each, that the answer names every path the round touched,
// and that a client rescanning only those paths sees the tree as it is.
func TestRandomChanges(t *testing.T) {
	t.Parallel()
	for seed := range 8 {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			testRandomChanges(t, uint64(seed))
		})
	}
}

func testRandomChanges(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	d := startDaemon(t, Options{})
	root := newRoot(t)
	c := &changer{t: t, rng: rng, root: root}
	for range 20 {
		c.step(map[string]bool{})
	}
	view := scanTree(t, root)
	tok := d.register(t, root)
	for round := range 10 {
		touched := map[string]bool{}
		for range 1 + rng.IntN(40) {
			c.step(touched)
		}
		ans := d.query(t, root, tok)
		if ans.Full {
			t.Fatalf("round %d: answer is Full (%s)", round, ans.Reason)
		}
		if !slices.IsSorted(ans.Paths) || len(slices.Compact(slices.Clone(ans.Paths))) != len(ans.Paths) {
			t.Errorf("round %d: paths not sorted and unique: %q", round, ans.Paths)
		}
		reported := map[string]bool{}
		for _, p := range ans.Paths {
			if p == "" || hasGitComponent(p) {
				t.Errorf("round %d: answer names %q", round, p)
			}
			reported[p] = true
		}
		// Every touched path that is there now must be named. One that
		// was there before and is gone may be named through a directory
		// above it that is gone or was relisted. One that came and went
		// within the round need not be: it may have lived in a directory
		// not yet watched.
		for p := range touched {
			switch {
			case reported[p] || lookup(root, p) == "" && (view[p] == "" || reportedAbove(reported, p)):
				delete(touched, p)
			}
		}
		if len(touched) > 0 {
			t.Errorf("round %d: touched paths missing from the answer: %q\nanswer: %q\nops: %s",
				round, slices.Sorted(maps.Keys(touched)), ans.Paths, strings.Join(c.log, "; "))
		}
		rescan(view, root, ans.Paths)
		if diff := cmp.Diff(scanTree(t, root), view); diff != "" {
			t.Errorf("round %d: tree as rescanned (-real +rescanned):\n%s\nops: %s", round, diff, strings.Join(c.log, "; "))
		}
		c.log = nil
		tok = ans.Token
	}
}

// TestChangesDuringQueries makes random changes while a client queries and
// rescans, registration included, and checks that once the changes stop,
// one more query brings the client's view up to date.
func TestChangesDuringQueries(t *testing.T) {
	t.Parallel()
	for seed := range 4 {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(seed), 0xc0c0))
			d := startDaemon(t, Options{})
			root := newRoot(t)
			c := &changer{t: t, rng: rng, root: root}
			for range 20 {
				c.step(map[string]bool{})
			}
			tok := ""
			var view map[string]string
			for round := range 6 {
				stop := make(chan struct{})
				client := make(chan error, 1)
				go func() { client <- keepQuerying(d.sock, root, &tok, &view, stop) }()
				for range 1 + rng.IntN(60) {
					c.step(map[string]bool{})
				}
				close(stop)
				if err := <-client; err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				ans := d.query(t, root, tok)
				if ans.Full {
					t.Fatalf("round %d: answer is Full (%s)", round, ans.Reason)
				}
				rescan(view, root, ans.Paths)
				tok = ans.Token
				if diff := cmp.Diff(scanTree(t, root), view); diff != "" {
					t.Errorf("round %d: tree as rescanned (-real +rescanned):\n%s\nops: %s", round, diff, strings.Join(c.log, "; "))
				}
				c.log = nil
			}
		})
	}
}

// keepQuerying queries and rescans as a client would until stop is closed,
// scanning the whole tree when the answer is Full.
func keepQuerying(sock, root string, tok *string, view *map[string]string, stop chan struct{}) error {
	for {
		ans, err := Query(context.Background(), sock, root, *tok)
		if err != nil {
			return err
		}
		if ans.Full {
			*view = map[string]string{}
			rescanAll(*view, root)
		} else {
			rescan(*view, root, ans.Paths)
		}
		*tok = ans.Token
		select {
		case <-stop:
			return nil
		default:
		}
	}
}

// rescanAll fills view with the tree at root, which may change meanwhile.
func rescanAll(view map[string]string, root string) {
	_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil // gone meanwhile: a later answer names it
		}
		if e.Name() == ".git" {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(root, p)
		if desc := describe(p); desc != "" {
			view[filepath.ToSlash(rel)] = desc
		}
		return nil
	})
}

// rescan updates view, a scanTree of root, as a client would from the
// paths in an answer: it looks at each again, and relists each that is a
// directory, dropping what is gone from it.
func rescan(view map[string]string, root string, paths []string) {
	for _, p := range paths {
		desc := lookup(root, p)
		prefix := p + "/"
		if p == "." {
			prefix = ""
		}
		for q := range view {
			rest, ok := strings.CutPrefix(q, prefix)
			if !ok || q == p {
				continue
			}
			child, _, _ := strings.Cut(rest, "/")
			if desc != "dir" || lookup(root, prefix+child) == "" {
				delete(view, q)
			}
		}
		switch {
		case p == ".":
		case desc == "":
			delete(view, p)
		default:
			view[p] = desc
		}
	}
}

// lookup describes what is at rel below root, as scanTree would: nothing
// when a directory above it is a symbolic link.
func lookup(root, rel string) string {
	dir := root
	parts := strings.Split(rel, "/")
	for _, c := range parts[:len(parts)-1] {
		dir = filepath.Join(dir, c)
		if describe(dir) != "dir" {
			return ""
		}
	}
	return describe(filepath.Join(root, filepath.FromSlash(rel)))
}

// reportedAbove reports whether a directory above p is named in reported.
func reportedAbove(reported map[string]bool, p string) bool {
	for p != "." {
		p = path.Dir(p)
		if reported[p] {
			return true
		}
	}
	return false
}

// changer makes random changes to the tree at root.
type changer struct {
	t    *testing.T
	rng  *rand.Rand
	root string
	log  []string
	n    int
}

var names = []string{"a", "b", "c", "d"}

// step makes one change and records in touched the paths it changed.
func (c *changer) step(touched map[string]bool) {
	t := c.t
	tree := scanTree(t, c.root)
	var dirs, entries, files []string
	dirs = append(dirs, ".")
	for p, desc := range tree {
		entries = append(entries, p)
		switch {
		case desc == "dir":
			dirs = append(dirs, p)
		case !strings.HasPrefix(desc, "link "):
			files = append(files, p)
		}
	}
	slices.Sort(dirs)
	slices.Sort(entries)
	slices.Sort(files)
	pick := func(from []string) string { return from[c.rng.IntN(len(from))] }
	newPath := func() string { return path.Join(pick(dirs), pick(names)) }
	touch := func(p string, withParent bool) {
		touched[p] = true
		if withParent {
			touched[path.Dir(p)] = true
		}
	}
	// touchTree touches p and all below it.
	touchTree := func(p string) {
		touch(p, true)
		for _, q := range entries {
			if strings.HasPrefix(q, p+"/") {
				touch(q, false)
			}
		}
	}
	abs := func(p string) string { return filepath.Join(c.root, filepath.FromSlash(p)) }
	c.n++
	switch op := c.rng.IntN(8); {
	case op <= 1: // write a file
		p := newPath()
		if tree[p] == "dir" || strings.HasPrefix(tree[p], "link ") {
			return // writing through a link changes its target
		}
		touch(p, tree[p] == "")
		c.log = append(c.log, "write "+p)
		must(t, os.WriteFile(abs(p), []byte(fmt.Sprint(c.n)), 0o644))
	case op == 2: // mkdir -p
		p := newPath()
		for range c.rng.IntN(3) {
			p = path.Join(p, pick(names))
		}
		var made []string
		for q := p; q != "." && tree[q] != "dir"; q = path.Dir(q) {
			if tree[q] != "" {
				return // a file in the way
			}
			made = append(made, q)
		}
		for _, q := range made {
			touch(q, true)
		}
		c.log = append(c.log, "mkdir "+p)
		must(t, os.MkdirAll(abs(p), 0o755))
	case op == 3 && len(entries) > 0: // remove
		p := pick(entries)
		touchTree(p)
		c.log = append(c.log, "rm -r "+p)
		must(t, os.RemoveAll(abs(p)))
	case op == 4 && len(entries) > 0: // rename
		src, dst := pick(entries), newPath()
		if dst == src || strings.HasPrefix(dst+"/", src+"/") || strings.HasPrefix(src+"/", dst+"/") {
			return
		}
		touchTree(src)
		if tree[dst] != "" {
			touchTree(dst)
			must(t, os.RemoveAll(abs(dst)))
		}
		c.log = append(c.log, "mv "+src+" "+dst)
		must(t, os.Rename(abs(src), abs(dst)))
		touch(dst, true)
		for q := range scanTree(t, abs(dst)) {
			touch(dst+"/"+q, false)
		}
	case op == 5 && len(files) > 0: // chmod
		p := pick(files)
		touch(p, false)
		c.log = append(c.log, "chmod "+p)
		must(t, os.Chmod(abs(p), os.FileMode(0o600+c.rng.IntN(2)*0o44)))
	case op == 6: // symlink
		p := newPath()
		if tree[p] != "" {
			return
		}
		touch(p, true)
		c.log = append(c.log, "ln -s "+p)
		must(t, os.Symlink(pick(names), abs(p)))
	case op == 7: // change inside .git: never reported
		p := path.Join(pick(dirs), ".git", pick(names))
		c.log = append(c.log, "write "+p)
		must(t, os.MkdirAll(abs(path.Dir(p)), 0o755))
		must(t, os.WriteFile(abs(p), []byte(fmt.Sprint(c.n)), 0o644))
	}
}
