//go:build linux

package transfer

import (
	"io/fs"
	"os"
	"syscall"
)

// sysIdentity returns what, beside size and mtime, tells whether a file
// may have changed: its device, inode and change time.
func sysIdentity(fi fs.FileInfo) (dev, ino uint64, ctime int64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0
	}
	return uint64(st.Dev), st.Ino, st.Ctim.Sec*1e9 + st.Ctim.Nsec
}

// ownedByMe reports whether this process's user owns the file.
func ownedByMe(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
