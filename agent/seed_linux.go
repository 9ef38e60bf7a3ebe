package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sky-coord/sky-coord/procscan"
)

// canMountOverlay: mounting takes root (CAP_SYS_ADMIN in the initial
// namespace, where the node's paths must be visible).
func canMountOverlay() bool { return os.Geteuid() == 0 }

// mountOverlay mounts lower (read only, shared) under upper (the node's
// changes) at dest. redirect_dir lets jobs rename directories that came
// from lower; a kernel without it mounts without.
func mountOverlay(lower, upper, work, dest string) error {
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	err := syscall.Mount("overlay", dest, "overlay", 0, opts+",redirect_dir=on")
	if errors.Is(err, syscall.EINVAL) {
		err = syscall.Mount("overlay", dest, "overlay", 0, opts)
	}
	return err
}

// isMountPoint reports whether p is on another filesystem than its parent.
func isMountPoint(p string) bool {
	var st, parent syscall.Stat_t
	if syscall.Lstat(p, &st) != nil || syscall.Lstat(filepath.Dir(p), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// lockFile takes an exclusive lock on path (created if needed); the
// returned func releases it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// isViewMount reports whether dest is now an overlayfs mount of lower
// under upper: the view seedTree made, not something mounted over it
// since.
func isViewMount(dest, lower, upper string) bool {
	ms, err := procscan.Mounts()
	if err != nil {
		return false
	}
	for i := len(ms) - 1; i >= 0; i-- { // the last mount at a point is the one seen
		if ms[i].Point != dest {
			continue
		}
		opts := strings.Split(ms[i].Options, ",")
		return ms[i].FSType == "overlay" && slices.Contains(opts, "lowerdir="+lower) && slices.Contains(opts, "upperdir="+upper)
	}
	return false
}

// mountStamp identifies the mount dest is on now: its mount id and the
// device of dest. The same stamp later means the same mount, so what was
// checked of it (isViewMount) still holds.
func mountStamp(dest string) (mountID, bool) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dest, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil || stx.Mask&unix.STATX_MNT_ID == 0 {
		return mountID{}, false
	}
	return mountID{mnt: stx.Mnt_id, major: stx.Dev_major, minor: stx.Dev_minor}, true
}

// hidesLower reports whether the directory p of an upper layer hides
// what the lower layer has at its path: it is opaque, or redirected to
// another lower directory. What cannot be read counts as hiding.
func hidesLower(p string) bool {
	var b [8]byte
	n, err := unix.Lgetxattr(p, "trusted.overlay.opaque", b[:])
	switch {
	case err == nil && n > 0 && b[0] == 'y':
		return true
	case err != nil && !errors.Is(err, unix.ENODATA):
		return true
	}
	if _, err := unix.Lgetxattr(p, "trusted.overlay.redirect", nil); !errors.Is(err, unix.ENODATA) {
		return true
	}
	return false
}
