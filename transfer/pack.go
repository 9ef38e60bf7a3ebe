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

	"path/filepath"

	"time"
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
	err = writeArchive(w, func(tw *tar.Writer) error {
		p.tw = tw
		ignored, err := walkTree(ctx, root, p.entry)
		p.stats.Ignored = ignored
		return err
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
	ctx   context.Context
	root  string
	tw    *tar.Writer
	stats Stats
}

// entry packs one entry the walk keeps.
func (p *packer) entry(rel string, fi fs.FileInfo) error {
	abs := filepath.Join(p.root, filepath.FromSlash(rel))
	switch {
	case fi.IsDir():
		if err := p.tw.WriteHeader(header(rel+"/", tar.TypeDir, fi)); err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}
		p.stats.Dirs++
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(abs)
		if err != nil {
			return fmt.Errorf("read link %s: %w", rel, err)
		}
		h := header(rel, tar.TypeSymlink, fi)
		h.Linkname = target
		h.Mode = 0o777
		if err := p.tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}
		p.stats.Symlinks++
	case fi.Mode().IsRegular():
		if err := writeFile(p.ctx, p.tw, abs, rel, fi); err != nil {
			return err
		}
		p.stats.Files++
		p.stats.Bytes += fi.Size()
	default:
		p.stats.Skipped++
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
