package transfer

// The second half of Apply: carrying a plan out (see apply.go).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func (a *applier) run(ctx context.Context) (err error) {
	for i := range a.m.Entries {
		if a.m.Entries[i].Type == TypeFile {
			a.stats.Files++
		}
	}
	if a.m.Entries[0].Type == TypeFile {
		return a.applyFile(ctx)
	}
	if a.fresh {
		return a.applyFresh(ctx)
	}
	return a.applyInPlace(ctx)
}

// applyFresh builds the whole tree beside dst and renames it into place.
func (a *applier) applyFresh(ctx context.Context) (err error) {
	parent := filepath.Dir(a.dst)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	a.work = filepath.Join(parent, newPrefix+filepath.Base(a.dst)+"-"+randomHex())
	if err := os.Mkdir(a.work, 0o700); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = removeTree(a.work) // best effort: err says what failed
		}
	}()
	var files []int
	for i := 1; i < len(a.m.Entries); i++ {
		e := &a.m.Entries[i]
		switch e.Type {
		case TypeDir:
			if err := os.Mkdir(a.abs(e.Path), 0o700); err != nil {
				return err
			}
			a.stats.Dirs++
		case TypeFile:
			a.act(i).staged = a.abs(e.Path)
			files = append(files, i)
		case TypeSymlink:
			if err := os.Symlink(e.Target, a.abs(e.Path)); err != nil {
				return err
			}
			a.stats.Symlinks++
		}
	}
	if err := a.writeFiles(ctx, files); err != nil {
		return err
	}
	if err := a.setDirMeta(nil); err != nil {
		return err
	}
	if err := os.Rename(a.work, a.dst); err != nil {
		return fmt.Errorf("move the new tree into place: %w", err)
	}
	a.work = a.dst
	return a.saveState()
}

// applyInPlace stages what changed inside dst, then deletes and renames.
func (a *applier) applyInPlace(ctx context.Context) (err error) {
	a.removeStaleStages()
	// Directories we must write into need the owner's write bit for now;
	// setDirMeta gives them their mode at the end.
	for i := range a.each(0) {
		e, act := &a.m.Entries[i], a.act(i)
		if e.Type == TypeDir && act.kind == actKeep && act.onDisk != nil && act.onDisk.Mode().Perm()&0o300 != 0o300 {
			if err := os.Chmod(a.abs(e.Path), act.onDisk.Mode().Perm()|0o700); err != nil {
				return err
			}
		}
	}
	needStage := false
	for i := range a.each(1) {
		if a.act(i).kind != actKeep && (a.m.Entries[i].Type != TypeDir || !a.act(i).inNew) {
			needStage = true
			break
		}
	}
	staged := false
	if needStage {
		a.stage = filepath.Join(a.dst, stagePrefix+randomHex())
		if err := os.Mkdir(a.stage, 0o700); err != nil {
			return fmt.Errorf("create staging directory: %w", err)
		}
		staged = true
	}
	defer func() {
		if staged {
			_ = removeTree(a.stage) // best effort: err says what failed
		}
	}()
	// A new directory is built whole in the staging directory, under
	// "t/" at its own path (its parents there are only scaffolding), and
	// renamed into place with all it holds; other files and links wait
	// in the staging directory under their index.
	var files []int
	for i := range a.each(1) {
		e, act := &a.m.Entries[i], a.act(i)
		if act.kind == actKeep {
			continue
		}
		act.staged = filepath.Join(a.stage, fmt.Sprint(i))
		if e.Type == TypeDir || act.inNew {
			act.staged = filepath.Join(a.stage, "t", filepath.FromSlash(e.Path))
		}
		switch e.Type {
		case TypeDir:
			mkdir := os.Mkdir
			if !act.inNew {
				mkdir = os.MkdirAll
			}
			if err := mkdir(act.staged, 0o700); err != nil {
				return err
			}
		case TypeFile:
			files = append(files, i)
		case TypeSymlink:
			if err := os.Symlink(e.Target, act.staged); err != nil {
				return err
			}
		}
	}
	if err := a.writeFiles(ctx, files); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Everything new is on disk: from here on, change dst.
	touched := make(map[string]bool)
	if err := a.deleteGone(touched); err != nil {
		return err
	}
	for i := range a.each(1) {
		if err := a.place(ctx, i, touched); err != nil {
			return err
		}
	}
	if err := a.setFileMeta(); err != nil {
		return err
	}
	if staged {
		staged = false
		if err := removeTree(a.stage); err != nil {
			return fmt.Errorf("remove staging directory: %w", err)
		}
		touched[RootPath] = true // the staging directory came and went
	}
	if err := a.setDirMeta(touched); err != nil {
		return err
	}
	return a.saveState()
}

// removeStaleStages removes staging directories a crashed Apply left.
func (a *applier) removeStaleStages() {
	entries, err := os.ReadDir(a.dst)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), stagePrefix) && findEntry(a.m.Entries, e.Name()) < 0 {
			_ = removeTree(filepath.Join(a.dst, e.Name())) // best effort: only leftovers
		}
	}
}

// deleteGone removes what the last Apply wrote and the source no longer
// has, deepest first, while it is still as written; directories go only
// when empty.
func (a *applier) deleteGone(touched map[string]bool) error {
	a.realDir = map[string]bool{RootPath: true}
	var gone []int // in the record, ascending
	if a.look != nil {
		gone = a.goneSparse()
	} else {
		kept := make([]bool, len(a.prev.entries))
		for _, j := range a.from {
			if j >= 0 {
				kept[j] = true
			}
		}
		for j := range a.prev.entries {
			if !kept[j] {
				gone = append(gone, j)
			}
		}
	}
	for k := len(gone) - 1; k >= 0; k-- {
		i := gone[k]
		e := &a.prev.entries[i]
		if e.Path == RootPath || !a.underRealDirs(e.Path) {
			continue
		}
		p := a.abs(e.Path)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if e.Type == TypeDir {
			if !fi.IsDir() {
				a.stats.Kept++
				continue
			}
			err := os.Remove(p)
			switch {
			case err == nil:
				a.stats.Deleted++
				touched[parentPath(e.Path)] = true
			case errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, syscall.EEXIST):
				a.stats.Kept++
			default:
				return fmt.Errorf("remove %s: %w", e.Path, err)
			}
			continue
		}
		if !a.ownedUnchanged(i, fi) {
			a.stats.Kept++
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", e.Path, err)
		}
		a.stats.Deleted++
		touched[parentPath(e.Path)] = true
	}
	return nil
}

// underRealDirs reports whether every directory above rel is a real
// directory, not a link (so deleting rel cannot reach outside dst).
func (a *applier) underRealDirs(rel string) bool {
	parent := parentPath(rel)
	if ok, known := a.realDir[parent]; known {
		return ok
	}
	ok := a.underRealDirs(parent)
	if ok {
		fi, err := os.Lstat(a.abs(parent))
		ok = err == nil && fi.IsDir()
	}
	a.realDir[parent] = ok
	return ok
}

// place puts entry i in place: creates a directory, or renames a staged
// file or link over whatever is there.
func (a *applier) place(ctx context.Context, i int, touched map[string]bool) error {
	e, act := &a.m.Entries[i], a.act(i)
	if act.kind == actKeep {
		return nil
	}
	if act.inNew {
		// Already inside its new directory; counted where it went in.
		switch e.Type {
		case TypeDir:
			a.stats.Dirs++
		case TypeSymlink:
			a.stats.Symlinks++
		}
		return nil
	}
	p := a.abs(e.Path)
	touched[parentPath(e.Path)] = true
	if act.kind == actReplace {
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return err
		case fi.IsDir() && e.Type == TypeDir:
		case fi.IsDir():
			// checkOwnedTree vouched for it, and deleteGone emptied it of
			// what was ours; anything left now is new.
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("cannot put %s in place of directory %s: %w; move what it holds away and sync again", e.Path, e.Path, err)
			}
		case e.Type == TypeDir:
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("replace %s with a directory: %w", e.Path, err)
			}
		}
	}
	switch e.Type {
	case TypeDir:
		if err := os.Rename(act.staged, p); err != nil {
			return fmt.Errorf("put directory %s in place: %w", e.Path, err)
		}
		a.stats.Dirs++
	case TypeFile, TypeSymlink:
		err := os.Rename(act.staged, p)
		if errors.Is(err, syscall.EXDEV) && e.Type == TypeFile {
			// A mount point inside dst: write again beside the target.
			tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".sky-tmp-"+randomHex())
			var buf copyBuffer
			rec, werr := a.writeFile(ctx, tmp, e, &buf)
			buf.release()
			if werr != nil {
				_ = os.Remove(tmp) // best effort: werr says what failed
				return werr
			}
			act.rec = rec
			err = os.Rename(tmp, p)
		}
		if err != nil {
			return fmt.Errorf("put %s in place: %w", e.Path, err)
		}
		if e.Type == TypeSymlink {
			a.stats.Symlinks++
		}
	}
	return nil
}

// writeFiles writes the files at the given entry indexes to their staged
// paths, several at once. A directory's files are written by one worker
// in a row: workers creating files in one directory contend for its lock
// (on ext4, spinning on it), and files created round-robin across many
// directories cost several times more than the same files one directory
// after another.
func (a *applier) writeFiles(ctx context.Context, files []int) error {
	if len(files) == 0 {
		return nil
	}
	var total int64
	for _, i := range files {
		total += a.m.Entries[i].Size
	}
	groups := groupByDir(files, func(i int) string { return filepath.Dir(a.act(i).staged) })
	m := newMeter(a.opts.Progress, "apply", len(files), total)
	err := eachParallel(ctx, a.opts.Workers, len(groups), func(ctx context.Context, g int) error {
		var buf copyBuffer
		defer buf.release()
		for _, i := range groups[g] {
			e, act := &a.m.Entries[i], a.act(i)
			rec, err := a.writeFile(ctx, act.staged, e, &buf)
			if err != nil {
				return err
			}
			act.rec = rec
			m.add(1, e.Size)
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.stats.Written += len(files)
	a.stats.WrittenBytes += total
	m.done()
	return nil
}

// groupByDir splits items into runs that share a directory, keeping their
// order within each run; the runs come in the order of their first item.
func groupByDir(items []int, dir func(int) string) [][]int {
	at := make(map[string]int)
	var groups [][]int
	for _, i := range items {
		d := dir(i)
		g, ok := at[d]
		if !ok {
			g = len(groups)
			at[d] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// writeFile writes e's content, mode and mtime to a new file at path and
// returns its record.
func (a *applier) writeFile(ctx context.Context, path string, e *Entry, buf *copyBuffer) (rec fileRecord, err error) {
	f, err := openFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return rec, err
	}
	defer func() {
		if f != nil {
			_ = f.Close() // an error is already on its way
		}
	}()
	for _, c := range e.Chunks {
		if err := ctx.Err(); err != nil {
			return rec, err
		}
		rc, err := a.src.Get(ctx, c.ID)
		if err != nil {
			return rec, fmt.Errorf("write %s: %w", e.Path, err)
		}
		n, err := copyChunkTo(f, rc, buf)
		rc.Close() // read only
		if err == nil && n != c.Size {
			err = fmt.Errorf("chunk %s holds %d bytes, the manifest says %d", c.ID, n, c.Size)
		}
		if err != nil {
			return rec, fmt.Errorf("write %s: %w", e.Path, err)
		}
	}
	if err := f.Chmod(e.FileMode()); err != nil {
		return rec, fmt.Errorf("write %s: %w", e.Path, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return rec, fmt.Errorf("write %s: %w", e.Path, cerr)
	}
	return a.setMTime(path, e)
}

// setMTime sets path's mtime to e's and returns the file's record.
func (a *applier) setMTime(path string, e *Entry) (fileRecord, error) {
	t := time.Unix(0, e.MTime)
	if err := os.Chtimes(path, time.Time{}, t); err != nil {
		return fileRecord{}, fmt.Errorf("set time of %s: %w", e.Path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fileRecord{}, err
	}
	_, ino, _ := fileIdentity(fi)
	return fileRecord{ino: ino, size: fi.Size(), mtime: fi.ModTime().UnixNano()}, nil
}

// setFileMeta gives files that were kept the mode and mtime of the source.
func (a *applier) setFileMeta() error {
	looked := 0
	for i := range a.each(1) {
		e, act := &a.m.Entries[i], a.act(i)
		if e.Type != TypeFile {
			continue
		}
		looked++
		if act.kind != actKeep {
			continue
		}
		if err := a.keepFileMeta(e, act); err != nil {
			return err
		}
	}
	if a.look != nil { // the files not looked at are unchanged too
		a.stats.Unchanged += a.stats.Files - looked
	}
	return nil
}

func (a *applier) keepFileMeta(e *Entry, act *action) error {
	a.stats.Unchanged++
	if act.onDisk == nil {
		return nil // trusted unchanged (SkipUnchanged)
	}
	if unixMode(act.onDisk.Mode()) != e.Mode {
		if err := os.Chmod(a.abs(e.Path), e.FileMode()); err != nil {
			return fmt.Errorf("set mode of %s: %w", e.Path, err)
		}
	}
	if act.rec.mtime != e.MTime {
		rec, err := a.setMTime(a.abs(e.Path), e)
		if err != nil {
			return err
		}
		act.rec = rec
	}
	return nil
}

// setDirMeta gives directories their mode and mtime, deepest first, so
// that setting one does not disturb another. With touched nil (a fresh
// tree) every directory is set; otherwise those created, touched, or whose
// mode or mtime differ.
func (a *applier) setDirMeta(touched map[string]bool) error {
	for i := range a.eachDown() {
		e, act := &a.m.Entries[i], a.act(i)
		if e.Type != TypeDir {
			continue
		}
		p := a.abs(e.Path)
		setMode, setTime := true, true
		if touched != nil && act.kind == actKeep {
			if fi := act.onDisk; fi != nil {
				setMode = unixMode(fi.Mode()) != e.Mode || fi.Mode().Perm()&0o300 != 0o300
				setTime = touched[e.Path] || fi.ModTime().UnixNano() != e.MTime
			} else {
				setMode, setTime = false, touched[e.Path]
			}
		}
		if setMode {
			if err := os.Chmod(p, e.FileMode()); err != nil {
				return fmt.Errorf("set mode of %s: %w", e.Path, err)
			}
		}
		if setTime {
			if err := os.Chtimes(p, time.Time{}, time.Unix(0, e.MTime)); err != nil {
				return fmt.Errorf("set time of %s: %w", e.Path, err)
			}
		}
	}
	return nil
}

// applyFile applies a manifest whose root is one file: dst becomes it.
func (a *applier) applyFile(ctx context.Context) error {
	e, act := &a.m.Entries[0], a.act(0)
	if act.kind == actKeep {
		return a.keepFileMeta(e, act)
	}
	parent := filepath.Dir(a.dst)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(parent, "."+filepath.Base(a.dst)+".sky-tmp-"+randomHex())
	act.staged = tmp
	if err := a.writeFiles(ctx, []int{0}); err != nil {
		_ = os.Remove(tmp) // best effort: err says what failed
		return err
	}
	if err := os.Rename(tmp, a.dst); err != nil {
		_ = os.Remove(tmp) // best effort: err says what failed
		return err
	}
	return nil
}

// saveState records the manifest just applied and its files' records:
// in a journal record of what changed since the last Apply, or whole.
func (a *applier) saveState() error {
	if a.look != nil {
		return a.saveSparse()
	}
	prev, from := a.prev, a.from
	if prev == nil { // a fresh tree, or Adopt: no record to build on
		prev, from = &applyState{dst: a.dst, rewrite: true}, make([]int, len(a.m.Entries))
		for i := range from {
			from[i] = -1
		}
	}
	next, err := prev.write(a.state, a.m.Entries, from, func(i int) fileRecord { return a.act(i).rec })
	if err != nil {
		return err
	}
	if v := a.view; v != nil && v.lower != nil {
		next.lowerOf = v.v.Lower
		for i, j := range v.lower {
			if j < 0 {
				next.notInLower = append(next.notInLower, a.m.Entries[i].Path)
			}
		}
	}
	a.next = next
	return nil
}

func randomHex() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprint(time.Now().UnixNano())
	}
	return hex.EncodeToString(b[:])
}
