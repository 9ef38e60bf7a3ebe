//go:build linux

package transfer

import (
	"io/fs"
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
