package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The machine-wide mountpoint registry: one directory per destination,
// named after its hash, holding `path` (the destination), `created` (the
// top-most path this registry created for it, empty when it existed
// before) and one file per claiming node, named after the node's marker
// hash and holding the marker. A claim whose node directory is gone is
// stale and swept.
func mountpointDir(dst string) string {
	sum := sha256.Sum256([]byte(dst))
	return filepath.Join(os.TempDir(), "sky-coord-mountpoints-"+strconv.Itoa(os.Getuid()), hex.EncodeToString(sum[:12]))
}

func ownerFile(dir, marker string) string {
	sum := sha256.Sum256([]byte(marker))
	return filepath.Join(dir, "owner-"+hex.EncodeToString(sum[:12]))
}

// lockRegistry serializes registry changes across agents.
func lockRegistry() (func(), error) {
	root := filepath.Dir(mountpointDir("/"))
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(root, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// claimMountpoint makes dst exist (an empty file or directory) and records
// marker's claim on it.
func claimMountpoint(dst string, file bool, marker string) error {
	unlock, err := lockRegistry()
	if err != nil {
		return fmt.Errorf("mountpoint registry: %w", err)
	}
	defer unlock()
	dir := mountpointDir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "path")); errors.Is(err, fs.ErrNotExist) {
		created, err := makeMountpoint(dst, file)
		if err != nil {
			return fmt.Errorf("create mountpoint %s: %w", dst, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "created"), []byte(created), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "path"), []byte(dst), 0o600); err != nil {
			return err
		}
	} else if _, err := makeMountpoint(dst, file); err != nil {
		return fmt.Errorf("create mountpoint %s: %w", dst, err)
	}
	return os.WriteFile(ownerFile(dir, marker), []byte(marker), 0o600)
}

// makeMountpoint creates dst when missing and returns the top-most path it
// created ("" when dst existed).
func makeMountpoint(dst string, file bool) (string, error) {
	if _, err := os.Lstat(dst); err == nil {
		return "", nil
	}
	top := dst
	for p := filepath.Dir(dst); p != "/" && p != "."; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		top = p
	}
	if !file {
		return top, os.MkdirAll(dst, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return "", err
	}
	return top, f.Close()
}

// releaseMountpoint drops marker's claim on dst; the last claim removes
// what the registry created, if it is still empty.
func releaseMountpoint(dst, marker string) error {
	unlock, err := lockRegistry()
	if err != nil {
		return err
	}
	defer unlock()
	dir := mountpointDir(dst)
	_ = os.Remove(ownerFile(dir, marker))
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "owner-") {
			continue
		}
		owner, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if _, err := os.Stat(string(owner)); err == nil {
			return nil // still claimed by a live node
		}
		_ = os.Remove(filepath.Join(dir, e.Name())) // stale: its node is gone
	}
	created, _ := os.ReadFile(filepath.Join(dir, "created"))
	if top := string(created); top != "" {
		removeEmpty(dst, top)
	}
	return os.RemoveAll(dir)
}

// removeEmpty removes dst and its parents up to top, as long as each is an
// empty directory or an empty file; it never removes content.
func removeEmpty(dst, top string) {
	for p := dst; ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err == nil && (fi.IsDir() || (fi.Mode().IsRegular() && fi.Size() == 0)) {
			if err := os.Remove(p); err != nil {
				return // not empty, or busy: leave it
			}
		}
		if p == top || p == "/" || p == "." {
			return
		}
	}
}
