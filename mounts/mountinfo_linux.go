//go:build linux

package mounts

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// IsMounted reports whether path is a mount point of this process's mount
// namespace, from /proc/self/mountinfo.
func IsMounted(path string) (bool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == abs {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
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
