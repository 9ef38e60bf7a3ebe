package transfer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// The ignore files a walk reads. When the root holds a .skyignore, only
// .skyignore files are used (at the root and below, each scoped to its
// directory); otherwise every .gitignore in the tree and .git/info/exclude.
// ".git" itself is never synced. This is git's semantics throughout, not
// that of the rsync filters SkyPilot builds from the same files (its
// issues #3298 and #5492), which lack negation and anchoring.
const (
	SkyIgnoreFile = ".skyignore"
	GitIgnoreFile = ".gitignore"
	gitExclude    = ".git/info/exclude"
	gitDir        = ".git"
)

// visitFunc is called for each entry a walk keeps, with its "/"-separated
// path below the root and its Lstat information.
type visitFunc func(rel string, fi fs.FileInfo) error

// walkTree calls visit for every entry below root that the ignore files
// keep, in name order, each directory before the entries it holds. It
// returns how many entries it left out (an ignored directory counts once).
// An entry removed while the walk runs is passed over.
func walkTree(ctx context.Context, root string, visit visitFunc) (ignored int, err error) {
	w := &walker{ctx: ctx, root: root, visit: visit}
	rules, err := w.rootRules()
	if err != nil {
		return 0, err
	}
	err = w.walk("", rules)
	return w.ignored, err
}

type walker struct {
	ctx        context.Context
	root       string
	ignoreFile string
	visit      visitFunc
	parallel   bool // visit is called under mu

	mu      sync.Mutex
	ignored int
}

// rootRules picks the ignore file name and reads .git/info/exclude when
// .gitignore files are in use.
func (w *walker) rootRules() (ignoreRules, error) {
	if _, err := os.Lstat(filepath.Join(w.root, SkyIgnoreFile)); err == nil {
		w.ignoreFile = SkyIgnoreFile
		return nil, nil
	}
	w.ignoreFile = GitIgnoreFile
	return readIgnoreFile(filepath.Join(w.root, filepath.FromSlash(gitExclude)), "", gitExclude)
}

// readIgnoreFile parses the ignore file at abs, if it is a regular file.
// Like git, it passes over one that is missing, a symbolic link (git will
// not follow those inside a work tree) or not a file.
func readIgnoreFile(abs, base, rel string) (ignoreRules, error) {
	fi, err := os.Lstat(abs)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return nil, nil
	default:
		return nil, fmt.Errorf("read ignore file %s: %w", rel, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read ignore file %s: %w", rel, err)
	}
	rules, _ := parseIgnore(base, string(data))
	return rules, nil
}

// walk visits the entries of directory rel ("" = root), in name order,
// and the directories below it, depth first.
func (w *walker) walk(rel string, rules ignoreRules) error {
	_, _, err := w.list(rel, rules, w.walk)
	return err
}

// list visits the entries of directory rel that the rules keep. With
// descend, it descends into each subdirectory right after visiting it;
// without, it returns the subdirectories and the rules that apply in them.
func (w *walker) list(rel string, rules ignoreRules, descend func(string, ignoreRules) error) ([]string, ignoreRules, error) {
	abs := w.root
	if rel != "" {
		abs = w.root + string(filepath.Separator) + filepath.FromSlash(rel)
	}
	more, err := readIgnoreFile(filepath.Join(abs, w.ignoreFile), rel, path.Join(rel, w.ignoreFile))
	if err != nil {
		return nil, nil, err
	}
	if len(more) > 0 {
		rules = append(rules[:len(rules):len(rules)], more...)
	}
	var entries []fs.DirEntry
	dir, err := os.Open(abs)
	if err == nil {
		defer dir.Close() // read only
		if entries, err = dir.ReadDir(-1); err == nil {
			slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
		}
	}
	if err != nil {
		if rel != "" && errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil // removed while we walk
		}
		return nil, nil, fmt.Errorf("read directory %s: %w", abs, err)
	}
	fd := int(dir.Fd())
	var dirs []string
	ignored := 0
	for _, e := range entries {
		if err := w.ctx.Err(); err != nil {
			return nil, nil, err
		}
		name := e.Name()
		if name == gitDir {
			ignored++
			continue
		}
		erel := name
		if rel != "" {
			erel = rel + "/" + name
		}
		if len(rules) > 0 && rules.ignored(erel, e.IsDir()) {
			ignored++
			continue
		}
		fi, err := lstatAt(dir, fd, name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while we walk
			}
			return nil, nil, fmt.Errorf("stat %s: %w", erel, err)
		}
		if err := w.visitEntry(erel, fi); err != nil {
			return nil, nil, err
		}
		if !fi.IsDir() {
			continue
		}
		if descend != nil {
			if err := descend(erel, rules); err != nil {
				return nil, nil, err
			}
		} else {
			dirs = append(dirs, erel)
		}
	}
	w.mu.Lock()
	w.ignored += ignored
	w.mu.Unlock()
	return dirs, rules, nil
}

func (w *walker) visitEntry(rel string, fi fs.FileInfo) error {
	if w.parallel {
		w.mu.Lock()
		defer w.mu.Unlock()
	}
	return w.visit(rel, fi)
}

// walkTreeParallel is walkTree with directories listed by up to workers
// goroutines at once. visit is still called one entry at a time, but in no
// particular order.
func walkTreeParallel(ctx context.Context, root string, workers int, visit visitFunc) (ignored int, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &walker{ctx: ctx, root: root, visit: visit, parallel: true}
	rules, err := w.rootRules()
	if err != nil {
		return 0, err
	}
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, max(1, workers))
		errMu    sync.Mutex
		firstErr error
	)
	var walkDir func(rel string, rules ignoreRules)
	walkDir = func(rel string, rules ignoreRules) {
		defer wg.Done()
		sem <- struct{}{}
		dirs, rules, err := w.list(rel, rules, nil)
		<-sem
		if err != nil {
			errMu.Lock()
			if firstErr == nil {
				firstErr = err
				cancel()
			}
			errMu.Unlock()
			return
		}
		for _, d := range dirs {
			wg.Add(1)
			go walkDir(d, rules)
		}
	}
	wg.Add(1)
	walkDir("", rules)
	wg.Wait()
	if firstErr != nil {
		return w.ignored, firstErr
	}
	return w.ignored, ctx.Err()
}
