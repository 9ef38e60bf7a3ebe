//go:build !linux

package transfer

import (
	"io/fs"
	"os"
	"path/filepath"
)

// sysIdentity returns what, beside size and mtime, tells whether a file
// may have changed. Off Linux it knows nothing more, and the stat cache
// relies on size and mtime alone.
func sysIdentity(fs.FileInfo) (dev, ino uint64, ctime int64) {
	return 0, 0, 0
}

// ownedByMe is unknown off Linux, and answers no.
func ownedByMe(fs.FileInfo) bool { return false }

// lstatAt is Lstat of the entry name of the open directory dir (fd is
// its descriptor).
func lstatAt(dir *os.File, _ int, name string) (fs.FileInfo, error) {
	return os.Lstat(filepath.Join(dir.Name(), name))
}
