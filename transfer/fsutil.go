package transfer

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

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
