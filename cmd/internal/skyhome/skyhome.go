// Package skyhome is what the CLI and the coordinator's binary share on a
// user's machine: the sky-coord home directory, the API token file in it,
// and what a running embedded coordinator writes there for the CLI.
package skyhome

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Dir is $SKY_COORD_HOME, default ~/.sky-coord.
func Dir() string {
	if h := os.Getenv("SKY_COORD_HOME"); h != "" {
		abs, err := filepath.Abs(h)
		if err == nil {
			return abs
		}
		return h
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".sky-coord"
	}
	return filepath.Join(home, ".sky-coord")
}

// ServerInfo is what a running embedded coordinator writes for the CLI.
type ServerInfo struct {
	Addr string `json:"addr"`
	PID  int    `json:"pid"`
}

// ReadOrCreateToken returns the API token stored in path, creating it
// (mode 0600) when missing.
func ReadOrCreateToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(data))) > 0 {
		return strings.TrimSpace(string(data)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read API token %s: %w", path, err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return ReadOrCreateToken(path) // another process won the race
	}
	if err != nil {
		return "", fmt.Errorf("create API token %s: %w", path, err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", err
	}
	return tok, f.Close()
}
