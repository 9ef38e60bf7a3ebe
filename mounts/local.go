package mounts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// LocalStore is a directory used as a bucket: key "a/b" is the file
// DIR/a/b. It is the store of the embedded default (file:// URLs) and of
// tests. A key and a longer key under it ("a" and "a/b") cannot both exist,
// as in a file system.
type LocalStore struct {
	root string
}

var _ Store = (*LocalStore)(nil)
var _ Copier = (*LocalStore)(nil)

// localTmp holds files being written, on the bucket's own file system so
// that they move into place atomically. Listings skip it.
const localTmp = ".sky-coord-tmp"

// NewLocal opens the directory dir as a bucket.
func NewLocal(dir string) *LocalStore { return &LocalStore{root: filepath.Clean(dir)} }

// URL implements Store.
func (l *LocalStore) URL() string { return "file://" + l.root }

func (l *LocalStore) fail(op, key string, err error) error {
	u := l.URL()
	if key != "" {
		u += "/" + key
	}
	var kind error
	switch {
	case errors.Is(err, fs.ErrNotExist):
		kind = ErrNotExist
	case errors.Is(err, fs.ErrPermission):
		kind = ErrPermission
	}
	return &storeError{op: op, url: u, kind: kind, err: err}
}

// path maps a key to its file, refusing keys that would leave the bucket.
func (l *LocalStore) path(key string) (string, error) {
	k := strings.TrimSuffix(key, "/")
	if k == "" || path.IsAbs(k) || path.Clean(k) != k || k == localTmp || strings.HasPrefix(k, localTmp+"/") {
		return "", fmt.Errorf("key %q is not a clean relative path", key)
	}
	for _, part := range strings.Split(k, "/") {
		if part == ".." || part == "." {
			return "", fmt.Errorf("key %q is not a clean relative path", key)
		}
	}
	return filepath.Join(l.root, filepath.FromSlash(k)), nil
}

func (l *LocalStore) exists() error {
	fi, err := os.Stat(l.root)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.IsDir()) {
		return &storeError{op: "open", url: l.URL(), kind: ErrBucketNotExist}
	}
	return err
}

// List implements Store.
func (l *LocalStore) List(ctx context.Context, prefix string, opts ListOptions) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		if err := l.exists(); err != nil {
			yield(Entry{}, err)
			return
		}
		// Start at the deepest directory the prefix names.
		dirKey := ""
		if i := strings.LastIndex(prefix, "/"); i >= 0 {
			dirKey = prefix[:i+1]
		}
		dir := l.root
		if dirKey != "" {
			p, err := l.path(dirKey)
			if err != nil {
				return // no key can start with an unclean prefix
			}
			dir = p
		}
		if opts.Delimited {
			ents, err := os.ReadDir(dir)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) || isNotDir(err) {
				return
			}
			if err != nil {
				yield(Entry{}, l.fail("list", prefix, err))
				return
			}
			for _, de := range ents {
				key := dirKey + de.Name()
				if !strings.HasPrefix(key, prefix) || key == localTmp {
					continue
				}
				e, ok, err := l.entry(key, de)
				if err != nil {
					yield(Entry{}, err)
					return
				}
				if ok && !yield(e, nil) {
					return
				}
			}
			return
		}
		var entries []Entry
		err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				if p == dir && (errors.Is(err, fs.ErrNotExist) || isNotDir(err)) {
					return fs.SkipAll
				}
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			rel, _ := filepath.Rel(l.root, p)
			key := filepath.ToSlash(rel)
			if de.IsDir() {
				if key == localTmp {
					return fs.SkipDir
				}
				// Skip directories that cannot hold a key with the prefix.
				if p != dir && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
					return fs.SkipDir
				}
				return nil
			}
			if !strings.HasPrefix(key, prefix) {
				return nil
			}
			e, ok, err := l.entry(key, de)
			if err == nil && ok {
				entries = append(entries, e)
			}
			return err
		})
		if err != nil {
			yield(Entry{}, l.fail("list", prefix, err))
			return
		}
		slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
		for _, e := range entries {
			if !yield(e, nil) {
				return
			}
		}
	}
}

func isNotDir(err error) bool {
	return errors.Is(err, syscall.ENOTDIR)
}

// entry describes one directory entry; ok is false for what is neither a
// regular file nor a directory.
func (l *LocalStore) entry(key string, de fs.DirEntry) (Entry, bool, error) {
	if de.IsDir() {
		return Entry{Key: key + "/", IsPrefix: true}, true, nil
	}
	if !de.Type().IsRegular() {
		return Entry{}, false, nil
	}
	fi, err := de.Info()
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, false, nil // deleted while listing
	}
	if err != nil {
		return Entry{}, false, l.fail("list", key, err)
	}
	return fileEntry(key, fi), true, nil
}

func fileEntry(key string, fi fs.FileInfo) Entry {
	return Entry{Key: key, Size: fi.Size(), ModTime: fi.ModTime(), ETag: fmt.Sprintf("%x-%x", fi.Size(), fi.ModTime().UnixNano())}
}

// Stat implements Store.
func (l *LocalStore) Stat(ctx context.Context, key string) (Entry, error) {
	p, err := l.path(key)
	if err != nil {
		return Entry{}, l.fail("stat", key, err)
	}
	fi, err := os.Stat(p)
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		if err := l.exists(); err != nil {
			return Entry{}, err
		}
		return Entry{}, l.fail("stat", key, err)
	}
	return fileEntry(key, fi), nil
}

// Read implements Store.
func (l *LocalStore) Read(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, l.fail("read", key, err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, l.fail("read", key, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fs.ErrNotExist
		}
		return nil, l.fail("read", key, err)
	}
	if length < 0 {
		length = 1<<63 - 1 - off
	}
	return &sectionCloser{SectionReader: io.NewSectionReader(f, off, length), f: f}, nil
}

type sectionCloser struct {
	*io.SectionReader
	f *os.File
}

func (s *sectionCloser) Close() error { return s.f.Close() }

// Write implements Store.
func (l *LocalStore) Write(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := l.exists(); err != nil {
		return err
	}
	p, err := l.path(key)
	if err != nil {
		return l.fail("write", key, err)
	}
	if strings.HasSuffix(key, "/") {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return l.fail("write", key, err)
		}
		return nil
	}
	tmpDir := filepath.Join(l.root, localTmp)
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return l.fail("write", key, err)
	}
	f, err := os.CreateTemp(tmpDir, "w-")
	if err != nil {
		return l.fail("write", key, err)
	}
	defer os.Remove(f.Name())
	n, err := io.Copy(f, readerOnly{r, ctx})
	if err == nil && size >= 0 && n != size {
		err = errShort(n, size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.MkdirAll(filepath.Dir(p), 0o755)
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		return l.fail("write", key, err)
	}
	return nil
}

// readerOnly hides a reader's other methods (WriterTo) so that io.Copy
// reads in chunks and sees ctx's cancellation between them.
type readerOnly struct {
	r   io.Reader
	ctx context.Context
}

func (r readerOnly) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// Delete implements Store. Directories left empty go too, as prefixes do
// in a bucket.
func (l *LocalStore) Delete(ctx context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return l.fail("delete", key, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return l.fail("delete", key, err)
	}
	for d := filepath.Dir(p); d != l.root && strings.HasPrefix(d, l.root); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break
		}
	}
	return nil
}

// CopyObject implements Copier.
func (l *LocalStore) CopyObject(ctx context.Context, src, dst string) error {
	st, err := l.Stat(ctx, src)
	if err != nil {
		return err
	}
	return streamCopy(ctx, l, src, dst, st.Size)
}

// CreateBucket implements Store.
func (l *LocalStore) CreateBucket(ctx context.Context) error {
	if _, err := os.Stat(l.root); err == nil {
		return &storeError{op: "create bucket", url: l.URL(), kind: ErrBucketExists}
	}
	if err := os.MkdirAll(l.root, 0o755); err != nil {
		return l.fail("create bucket", "", err)
	}
	return nil
}

// DeleteBucket implements Store.
func (l *LocalStore) DeleteBucket(ctx context.Context) error {
	if err := l.exists(); err != nil {
		return &storeError{op: "delete bucket", url: l.URL(), kind: ErrBucketNotExist}
	}
	if err := os.RemoveAll(l.root); err != nil {
		return l.fail("delete bucket", "", err)
	}
	return nil
}

// BucketExists implements Store.
func (l *LocalStore) BucketExists(ctx context.Context) (bool, error) {
	err := l.exists()
	if errors.Is(err, ErrBucketNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Close implements Store.
func (l *LocalStore) Close() error { return nil }
