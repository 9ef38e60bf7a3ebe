//go:build !linux

package fswatch

import (
	"io/fs"
	"os"
	"runtime"
)

// fsReason returns why changes under dir cannot be watched: without
// inotify, nothing is.
func fsReason(dir *os.File) (string, error) {
	return "file change notification is implemented on linux only, not " + runtime.GOOS, nil
}

// openDir opens dir for listing.
func openDir(dir string) (*os.File, error) { return os.Open(dir) }

// fileIdentity returns zeros: the daemon watches nothing here.
func fileIdentity(fi fs.FileInfo) (dev, ino uint64) { return 0, 0 }
