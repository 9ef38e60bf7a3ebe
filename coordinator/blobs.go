package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
)

// blobStore keeps uploaded archives by the sha256 of their bytes.
type blobStore struct{ dir string }

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func newBlobStore(dir string) (*blobStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create blob directory %s: %w", dir, err)
	}
	return &blobStore{dir: dir}, nil
}

func (b *blobStore) path(digest string) (string, error) {
	if !digestRE.MatchString(digest) {
		return "", fmt.Errorf("blob digest %q is not a sha256 hex string", digest)
	}
	return filepath.Join(b.dir, digest), nil
}

// Has reports whether a blob is stored.
func (b *blobStore) Has(digest string) bool {
	p, err := b.path(digest)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// Put stores r's bytes and returns their digest and size.
func (b *blobStore) Put(r io.Reader) (string, int64, error) {
	tmp, err := os.CreateTemp(b.dir, ".upload-*")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if err != nil {
		tmp.Close()
		return "", 0, fmt.Errorf("receive blob: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", 0, fmt.Errorf("store blob: %w", err)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	if err := os.Rename(tmp.Name(), filepath.Join(b.dir, digest)); err != nil {
		return "", 0, fmt.Errorf("store blob: %w", err)
	}
	return digest, n, nil
}

// Open opens a stored blob.
func (b *blobStore) Open(digest string) (*os.File, error) {
	p, err := b.path(digest)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}
