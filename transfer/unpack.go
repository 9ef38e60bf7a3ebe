package transfer

import (
	"archive/tar"
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ErrUnsafePath is returned by Unpack for an entry that would land outside
// the destination: an absolute name, a ".." component, or a path through a
// symbolic link.
var ErrUnsafePath = errors.New("unsafe path in archive")

// Unpack extracts the tar.gz read from r to dest, atomically: the tree is
// built beside dest (dest+".sky-tmp-XXXX"), then renamed into place,
// replacing whatever was at dest, which is removed afterwards. With file,
// the archive must hold one regular file, which becomes dest. Missing
// parents of dest are created.
//
// Symbolic links are restored as they were packed, whatever they point to
// (rsync -a does the same, and a workdir may link to /data or ../shared),
// but no entry is ever written through one: a name that passes through a
// link fails with ErrUnsafePath, as do absolute names and "..".
func Unpack(ctx context.Context, r io.Reader, dest string, file bool) error {
	abs, err := filepath.Abs(dest)
	if err != nil {
		return fmt.Errorf("unpack to %s: %w", dest, err)
	}
	parent := filepath.Dir(abs)
	if parent == abs {
		return fmt.Errorf("unpack to %s: cannot replace the root directory", dest)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("unpack to %s: %w", dest, err)
	}
	zr, err := gzip.NewReader(ctxReader{ctx, r})
	if err != nil {
		return fmt.Errorf("unpack to %s: read gzip: %w", dest, err)
	}
	tr := tar.NewReader(zr)
	if file {
		err = unpackFile(ctx, tr, abs)
	} else {
		err = unpackTree(ctx, tr, abs, replace)
	}
	if err != nil {
		return fmt.Errorf("unpack to %s: %w", dest, err)
	}
	return nil
}

func unpackFile(ctx context.Context, tr *tar.Reader, dest string) (err error) {
	h, err := tr.Next()
	if errors.Is(err, io.EOF) {
		return errors.New("archive is empty, want one file")
	}
	if err != nil {
		return fmt.Errorf("read tar: %w", err)
	}
	if h.Typeflag != tar.TypeReg {
		return fmt.Errorf("entry %q is not a regular file", h.Name)
	}
	f, err := os.CreateTemp(filepath.Dir(dest), filepath.Base(dest)+".sky-tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp) // best effort: the error says what failed
		}
	}()
	if _, err := io.Copy(f, ctxReader{ctx, tr}); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", h.Name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", h.Name, err)
	}
	if err := os.Chmod(tmp, fs.FileMode(h.Mode).Perm()|specialBits(h.Mode)); err != nil {
		return err
	}
	if err := os.Chtimes(tmp, h.ModTime, h.ModTime); err != nil {
		return err
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		return errors.New("archive holds more than one entry, want one file")
	}
	return replace(tmp, dest)
}

// Merge extracts the tar.gz read from r into the directory dest the way
// rsync without --delete does: every entry of the archive replaces the
// one at its path (each file atomically, by rename), and whatever else is
// in dest — a job's outputs in ~/sky_workdir, say — stays.
func Merge(ctx context.Context, r io.Reader, dest string) error {
	abs, err := filepath.Abs(dest)
	if err != nil {
		return fmt.Errorf("unpack to %s: %w", dest, err)
	}
	if filepath.Dir(abs) == abs {
		return fmt.Errorf("unpack to %s: cannot merge into the root directory", dest)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return fmt.Errorf("unpack to %s: %w", dest, err)
	}
	zr, err := gzip.NewReader(ctxReader{ctx, r})
	if err != nil {
		return fmt.Errorf("unpack to %s: read gzip: %w", dest, err)
	}
	if err := unpackTree(ctx, tar.NewReader(zr), abs, merge); err != nil {
		return fmt.Errorf("unpack to %s: %w", dest, err)
	}
	return nil
}

// merge moves the tree tmp into dest entry by entry, keeping what dest
// holds that tmp does not, then removes tmp.
func merge(tmp, dest string) error {
	fi, err := os.Lstat(dest)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.IsDir()) {
		return replace(tmp, dest)
	}
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		src, dst := filepath.Join(tmp, e.Name()), filepath.Join(dest, e.Name())
		if e.IsDir() {
			if err := merge(src, dst); err != nil {
				return err
			}
			continue
		}
		if dfi, err := os.Lstat(dst); err == nil && dfi.IsDir() {
			if err := removeTree(dst); err != nil {
				return err
			}
		}
		if err := os.Rename(src, dst); err != nil {
			return err
		}
	}
	// The directory's own mode and mtime come from the archive.
	if tfi, err := os.Stat(tmp); err == nil {
		_ = os.Chmod(dest, tfi.Mode().Perm()|tfi.Mode()&(fs.ModeSetgid|fs.ModeSticky))
		_ = os.Chtimes(dest, tfi.ModTime(), tfi.ModTime())
	}
	return removeTree(tmp)
}

func unpackTree(ctx context.Context, tr *tar.Reader, dest string, place func(tmp, dest string) error) (err error) {
	tmp, err := os.MkdirTemp(filepath.Dir(dest), filepath.Base(dest)+".sky-tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = removeTree(tmp) // best effort: the error says what failed
		}
	}()
	x := &extractor{root: tmp, safe: map[string]bool{"": true}, dirs: map[string]*tar.Header{}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := x.entry(ctx, h, tr); err != nil {
			return err
		}
	}
	if err := x.finish(); err != nil {
		return err
	}
	return place(tmp, dest)
}

// extractor writes entries below root, which it created and alone owns.
type extractor struct {
	root string
	// safe holds directories (relative names) known to be real
	// directories created by this extraction, not links.
	safe map[string]bool
	// dirs holds directory headers, applied (mode, mtime) at the end so
	// a read-only directory does not block the entries inside it.
	dirs map[string]*tar.Header
}

// cleanName checks an entry name and returns it cleaned, "/"-separated,
// "" for the root itself.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrUnsafePath)
	}
	if strings.HasPrefix(name, "/") || filepath.IsAbs(name) {
		return "", fmt.Errorf("%w: absolute name %q", ErrUnsafePath, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: %q has a \"..\" component", ErrUnsafePath, name)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

func (x *extractor) entry(ctx context.Context, h *tar.Header, r io.Reader) error {
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	if name == "" {
		if h.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: root entry %q is not a directory", ErrUnsafePath, h.Name)
		}
		x.dirs[""] = h
		return nil
	}
	if err := x.ensureParent(name); err != nil {
		return err
	}
	target := filepath.Join(x.root, filepath.FromSlash(name))
	if fi, err := os.Lstat(target); err == nil {
		// A later entry of the same name replaces the earlier one, as tar
		// does; a directory stays a directory.
		if !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
			if err := removeTree(target); err != nil {
				return err
			}
			x.safe = map[string]bool{"": true}
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		x.safe[name] = true
		x.dirs[name] = h
	case tar.TypeReg:
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
			_ = f.Close()
			return fmt.Errorf("write %s: %w", name, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if err := os.Chmod(target, fs.FileMode(h.Mode).Perm()|specialBits(h.Mode)); err != nil {
			return err
		}
		if err := os.Chtimes(target, h.ModTime, h.ModTime); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if h.Linkname == "" {
			return fmt.Errorf("symbolic link %q has no target", h.Name)
		}
		if err := os.Symlink(h.Linkname, target); err != nil {
			return err
		}
	case tar.TypeLink:
		old, err := cleanName(h.Linkname)
		if err != nil || old == "" {
			return fmt.Errorf("%w: hard link %q to %q", ErrUnsafePath, h.Name, h.Linkname)
		}
		if err := x.ensureParent(old); err != nil {
			return err
		}
		src := filepath.Join(x.root, filepath.FromSlash(old))
		if fi, err := os.Lstat(src); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("hard link %q: %q is not a regular file in the archive", h.Name, h.Linkname)
		}
		if err := os.Link(src, target); err != nil {
			return err
		}
	default:
		return fmt.Errorf("entry %q: unsupported type %q", h.Name, h.Typeflag)
	}
	return nil
}

// ensureParent makes sure every directory above name is a real directory
// below root (created if missing), never a symbolic link.
func (x *extractor) ensureParent(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	if x.safe[dir] {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		sub := strings.Join(parts[:i+1], "/")
		if x.safe[sub] {
			continue
		}
		p := filepath.Join(x.root, filepath.FromSlash(sub))
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %q passes through symbolic link %q", ErrUnsafePath, name, sub)
		case !fi.IsDir():
			return fmt.Errorf("entry %q: %q is not a directory", name, sub)
		}
		x.safe[sub] = true
	}
	return nil
}

// finish applies directory modes and mtimes, deepest first.
func (x *extractor) finish() error {
	names := make([]string, 0, len(x.dirs))
	for n := range x.dirs {
		names = append(names, n)
	}
	// Longer names first: children before their parents.
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	for _, n := range names {
		h := x.dirs[n]
		p := filepath.Join(x.root, filepath.FromSlash(n))
		if err := os.Chmod(p, fs.FileMode(h.Mode).Perm()|specialBits(h.Mode)); err != nil {
			return err
		}
		if err := os.Chtimes(p, h.ModTime, h.ModTime); err != nil {
			return err
		}
	}
	if _, ok := x.dirs[""]; !ok {
		return os.Chmod(x.root, 0o755)
	}
	return nil
}

func specialBits(mode int64) fs.FileMode {
	var m fs.FileMode
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// replace moves tmp to dest. A directory (or anything, when tmp is a
// directory) at dest is first moved aside and removed after the rename;
// a file at dest is replaced by the rename itself.
func replace(tmp, dest string) error {
	fi, err := os.Lstat(dest)
	if errors.Is(err, fs.ErrNotExist) {
		return os.Rename(tmp, dest)
	}
	if err != nil {
		return err
	}
	tfi, err := os.Lstat(tmp)
	if err != nil {
		return err
	}
	if !fi.IsDir() && !tfi.IsDir() {
		return os.Rename(tmp, dest)
	}
	old := dest + ".sky-old-" + randomHex()
	if err := os.Rename(dest, old); err != nil {
		return fmt.Errorf("move old %s aside: %w", dest, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		if rerr := os.Rename(old, dest); rerr != nil {
			return fmt.Errorf("move new tree into place: %w (and restore old one: %v)", err, rerr)
		}
		return fmt.Errorf("move new tree into place: %w", err)
	}
	if err := removeTree(old); err != nil {
		return fmt.Errorf("new tree in place, but remove old one: %w", err)
	}
	return nil
}

// removeTree removes p like os.RemoveAll, first making read-only
// directories writable when that is what stopped it.
func removeTree(p string) error {
	if err := os.RemoveAll(p); err == nil {
		return nil
	}
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(q, 0o700) // best effort; RemoveAll below reports
		}
		return nil
	})
	return os.RemoveAll(p)
}
