// Package transfer moves a directory tree or one file as a deterministic
// tar.gz archive: Pack and PackFile on the client, Unpack (atomic, safe
// against path traversal) on the node. The archive is what the coordinator
// stores as a content-addressed blob, so the same tree packs to the same
// bytes.
package transfer

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"
)

// The ignore files Pack reads. When the root holds a .skyignore, only
// .skyignore files are used; otherwise every .gitignore in the tree and
// .git/info/exclude, as rsync does for SkyPilot (semantics §3).
const (
	SkyIgnoreFile = ".skyignore"
	GitIgnoreFile = ".gitignore"
	gitExclude    = ".git/info/exclude"
	gitDir        = ".git"
)

// Stats counts what Pack put into an archive.
type Stats struct {
	Files    int   // regular files
	Dirs     int   // directories below the root
	Symlinks int   // symbolic links, kept as links
	Bytes    int64 // content bytes of the regular files
	Ignored  int   // entries left out by ignore rules or .git (a left-out directory counts once)
	Skipped  int   // entries of other types (sockets, devices, pipes)
}

// Pack writes the tree under dir as a tar.gz to w. Entries are sorted by
// name; modes and mtimes (to the second) are kept, owners are not;
// symbolic links are stored as links. ".git" is never packed, and the
// ignore files decide what else is left out (see SkyIgnoreFile). If dir
// itself is a symbolic link, the directory it points to is packed.
func Pack(ctx context.Context, dir string, w io.Writer) (Stats, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return Stats{}, fmt.Errorf("pack %s: %w", dir, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return Stats{}, fmt.Errorf("pack %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return Stats{}, fmt.Errorf("pack %s: not a directory", dir)
	}
	p := &packer{ctx: ctx, root: root}
	var rules ignoreRules
	if _, err := os.Lstat(filepath.Join(root, SkyIgnoreFile)); err == nil {
		p.ignoreFile = SkyIgnoreFile
	} else {
		p.ignoreFile = GitIgnoreFile
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(gitExclude)))
		switch {
		case err == nil:
			if rules, err = parseIgnore("", string(data)); err != nil {
				return Stats{}, fmt.Errorf("pack %s: read %s: %w", dir, gitExclude, err)
			}
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
			// No repository, or .git is a file (a worktree or submodule).
		default:
			return Stats{}, fmt.Errorf("pack %s: read %s: %w", dir, gitExclude, err)
		}
	}
	err = writeArchive(w, func(tw *tar.Writer) error {
		p.tw = tw
		return p.walk("", rules)
	})
	if err != nil {
		return p.stats, fmt.Errorf("pack %s: %w", dir, err)
	}
	return p.stats, nil
}

// PackFile writes an archive holding the one regular file at path (a
// symbolic link is followed), named by its base name.
func PackFile(ctx context.Context, path string, w io.Writer) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("pack file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("pack file %s: not a regular file", path)
	}
	err = writeArchive(w, func(tw *tar.Writer) error {
		return writeFile(ctx, tw, path, filepath.Base(path), fi)
	})
	if err != nil {
		return fmt.Errorf("pack file %s: %w", path, err)
	}
	return nil
}

// writeArchive wraps fill in a deterministic gzip stream (no name, no
// time in the header) and closes both writers, checking their errors.
func writeArchive(w io.Writer, fill func(*tar.Writer) error) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	if err := fill(tw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("finish gzip: %w", err)
	}
	return nil
}

type packer struct {
	ctx        context.Context
	root       string
	ignoreFile string
	tw         *tar.Writer
	stats      Stats
}

// walk packs the entries of directory rel ("" = root), in name order.
func (p *packer) walk(rel string, rules ignoreRules) error {
	abs := filepath.Join(p.root, filepath.FromSlash(rel))
	data, err := os.ReadFile(filepath.Join(abs, p.ignoreFile))
	switch {
	case err == nil:
		more, err := parseIgnore(rel, string(data))
		if err != nil {
			return fmt.Errorf("read %s: %w", path.Join(rel, p.ignoreFile), err)
		}
		rules = append(rules[:len(rules):len(rules)], more...)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read %s: %w", path.Join(rel, p.ignoreFile), err)
	}
	entries, err := os.ReadDir(abs) // sorted by name
	if err != nil {
		return fmt.Errorf("read directory %s: %w", abs, err)
	}
	for _, e := range entries {
		if err := p.ctx.Err(); err != nil {
			return err
		}
		name := e.Name()
		erel := path.Join(rel, name)
		if name == gitDir {
			p.stats.Ignored++
			continue
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while we walk
			}
			return fmt.Errorf("stat %s: %w", erel, err)
		}
		if rules.ignored(erel, fi.IsDir()) {
			p.stats.Ignored++
			continue
		}
		eabs := filepath.Join(abs, name)
		switch {
		case fi.IsDir():
			if err := p.tw.WriteHeader(header(erel+"/", tar.TypeDir, fi)); err != nil {
				return fmt.Errorf("write %s: %w", erel, err)
			}
			p.stats.Dirs++
			if err := p.walk(erel, rules); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(eabs)
			if err != nil {
				return fmt.Errorf("read link %s: %w", erel, err)
			}
			h := header(erel, tar.TypeSymlink, fi)
			h.Linkname = target
			h.Mode = 0o777
			if err := p.tw.WriteHeader(h); err != nil {
				return fmt.Errorf("write %s: %w", erel, err)
			}
			p.stats.Symlinks++
		case fi.Mode().IsRegular():
			if err := writeFile(p.ctx, p.tw, eabs, erel, fi); err != nil {
				return err
			}
			p.stats.Files++
			p.stats.Bytes += fi.Size()
		default:
			p.stats.Skipped++
		}
	}
	return nil
}

// header is the deterministic part of every entry: no owners, mtime to the
// second, permission and setuid/setgid/sticky bits.
func header(name string, typ byte, fi fs.FileInfo) *tar.Header {
	mode := int64(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     mode,
		ModTime:  fi.ModTime().Truncate(time.Second),
	}
}

func writeFile(ctx context.Context, tw *tar.Writer, abs, name string, fi fs.FileInfo) error {
	f, err := os.Open(abs)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer f.Close() // read only
	h := header(name, tar.TypeReg, fi)
	h.Size = fi.Size()
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	n, err := io.CopyN(tw, ctxReader{ctx, f}, h.Size)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("write %s: file shrank while packing (%d of %d bytes)", name, n, h.Size)
		}
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// ctxReader stops a long copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
