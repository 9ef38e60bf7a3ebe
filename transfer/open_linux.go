//go:build linux

package transfer

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// openFile is os.OpenFile for regular files on the hot paths (every file
// of a tree is opened once to describe it and once to write it): os.Open
// also makes the descriptor non-blocking, offers it to the network
// poller (which refuses regular files) and makes it blocking again, five
// system calls more than this, a third of a small file's cost where
// system calls are dear. The file is opened close-on-exec, as os.Open
// opens it.
func openFile(path string, flag int, perm fs.FileMode) (*os.File, error) {
	for {
		fd, err := unix.Open(path, flag|unix.O_CLOEXEC, uint32(perm.Perm()))
		if err == nil {
			return os.NewFile(uintptr(fd), path), nil
		}
		if err != unix.EINTR {
			op := "open"
			if flag&os.O_CREATE != 0 {
				op = "create"
			}
			return nil, &fs.PathError{Op: op, Path: path, Err: err}
		}
	}
}

// copyRange copies up to size bytes at offset off of src to dst, at dst's
// offset, in the kernel and without moving src's offset (os's copy needs
// a seek first). It stops early, without an error, wherever
// copy_file_range cannot serve (another filesystem, an old kernel, a
// file type it refuses): the caller copies the rest another way, which
// also reports any error that was real.
func copyRange(dst, src *os.File, off, size int64) int64 {
	in, out := int(src.Fd()), int(dst.Fd()) // blocking files (openFile): no system call
	var done int64
	for done < size {
		n, err := unix.CopyFileRange(in, &off, out, nil, int(min(size-done, 1<<30)), 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			break
		}
		done += int64(n)
	}
	return done
}
