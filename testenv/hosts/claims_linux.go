package hosts

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// A host is claimed by a directory stateDir/h<index> holding its owner:
// the test process that made it. Claims of processes that are gone are
// stale, and the next New removes their hosts.

// lockState serializes host creation and removal across test processes
// (useradd and userdel also refuse to run concurrently).
func lockState() (func(), error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", stateDir, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// owner identifies this test process in a claim: pid and start time, so
// a reused pid does not keep a stale claim alive.
func owner(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return strconv.Itoa(pid) + " " + f[19] // field 22: starttime
}

var claimName = regexp.MustCompile(`^h(\d+)$`)

// cleanStale removes every host whose claiming process is gone, and the
// bridge when no host is left. Call with the lock held.
func cleanStale() error {
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		m := claimName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		idx, _ := strconv.Atoi(m[1])
		data, _ := os.ReadFile(filepath.Join(stateDir, e.Name(), "owner"))
		f := strings.Fields(string(data))
		if len(f) == 2 {
			if pid, _ := strconv.Atoi(f[0]); pid > 0 && owner(pid) == string(data) {
				continue // its test process still runs
			}
		}
		h := &nsHost{idx: idx, user: "skyc-h" + strconv.Itoa(idx)}
		if err := h.destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeBridgeIfUnused deletes the bridge when no host claims remain.
// Call with the lock held.
func removeBridgeIfUnused() error {
	entries, _ := os.ReadDir(stateDir)
	for _, e := range entries {
		if claimName.MatchString(e.Name()) {
			return nil
		}
	}
	if _, err := net.InterfaceByName(bridgeName); err != nil {
		return nil
	}
	return run("ip", "link", "del", bridgeName)
}
