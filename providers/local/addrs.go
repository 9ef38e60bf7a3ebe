package local

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/providers"
)

// claimDir holds one file per loopback address handed out by any local
// provider of this user on this machine, whatever its SKY_COORD_HOME: the
// file is named after the address and holds the node's home. It keeps two
// homes from giving out the same address before either agent listens.
func claimDir() string {
	return filepath.Join(os.TempDir(), "sky-coord-local-addrs-"+strconv.Itoa(os.Getuid()))
}

// claim takes ip for owner. A claim whose owner directory is gone (a home
// deleted without `down`) is stale and taken over.
func claim(ip, owner string) bool {
	dir := claimDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false
	}
	path := filepath.Join(dir, ip)
	for i := 0; i < 2; i++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, werr := f.WriteString(owner)
			cerr := f.Close()
			return werr == nil && cerr == nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return false
		}
		prev, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		if _, err := os.Stat(string(prev)); err == nil || strings.TrimSpace(string(prev)) == "" {
			return string(prev) == owner
		}
		_ = os.Remove(path) // stale: its owner is gone
	}
	return false
}

// release gives ip back if owner holds it.
func release(ip, owner string) {
	path := filepath.Join(claimDir(), ip)
	if prev, err := os.ReadFile(path); err == nil && string(prev) == owner {
		_ = os.Remove(path)
	}
}

// allocIP returns a loopback address that no local node uses and nothing
// on this machine listens on at the agent port, claimed for owner. Outside
// Linux, where only 127.0.0.1 is routed to loopback, every node shares it.
func allocIP(used map[string]bool, owner string) (string, error) {
	if runtime.GOOS != "linux" {
		return "127.0.0.1", nil
	}
	for a := 1; a < 255; a++ {
		for b := 1; b < 255; b++ {
			ip := fmt.Sprintf("127.0.%d.%d", a, b)
			if used[ip] || !claim(ip, owner) {
				continue
			}
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(api.AgentPort)))
			if err != nil {
				release(ip, owner)
				continue
			}
			l.Close()
			return ip, nil
		}
	}
	return "", fmt.Errorf("no free loopback address left in 127.0.1.1-127.0.254.254: %w", providers.ErrNoCapacity)
}
