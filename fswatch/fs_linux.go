//go:build linux

package fswatch

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fsReason returns why changes under the open directory dir cannot be
// watched, or "" when its filesystem is one where inotify sees every change.
func fsReason(dir *os.File) (string, error) {
	var st unix.Statfs_t
	conn, err := dir.SyscallConn()
	if err != nil {
		return "", err
	}
	var statErr error
	if err := conn.Control(func(fd uintptr) { statErr = unix.Fstatfs(int(fd), &st) }); err != nil {
		return "", err
	}
	if statErr != nil {
		return "", &fs.PathError{Op: "statfs", Path: dir.Name(), Err: statErr}
	}
	return magicReason(uint32(st.Type)), nil
}

// openDir opens dir for listing without following a symbolic link there.
func openDir(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// fileIdentity returns the device and inode of fi.
func fileIdentity(fi fs.FileInfo) (dev, ino uint64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return uint64(st.Dev), st.Ino
}
