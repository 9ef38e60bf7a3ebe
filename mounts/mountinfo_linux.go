//go:build linux

package mounts

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/sky-coord/sky-coord/procscan"
)

// IsMounted reports whether path is a mount point of this process's mount
// namespace, from /proc/self/mountinfo.
func IsMounted(path string) (bool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	points, err := procscan.MountPoints()
	return slices.Contains(points, abs), err
}

// detachStale lazily unmounts what a dead process left mounted at dst
// (its FUSE connection is gone: "transport endpoint is not connected").
func detachStale(dst string, log *slog.Logger) error {
	mounted, err := IsMounted(dst)
	if err != nil || !mounted {
		return err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err == nil {
		return fmt.Errorf("mount at %s: something is already mounted there; unmount it first", dst)
	}
	if err := syscall.Unmount(dst, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("mount at %s: detach the stale mount left there: %w", dst, err)
	}
	log.Warn("detached a stale mount left by a process that died", "path", dst)
	return nil
}
