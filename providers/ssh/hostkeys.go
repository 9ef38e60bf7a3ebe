package ssh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// HostKeyStore keeps the host keys pinned on first use, by machine
// (host:port), in authorized_keys format. The coordinator backs it with
// its replicated state; FileHostKeys keeps them in a file.
type HostKeyStore interface {
	// HostKey returns the key pinned for host, or "" when none is.
	HostKey(ctx context.Context, host string) (string, error)
	// RememberHostKey pins key for host.
	RememberHostKey(ctx context.Context, host, key string) error
}

// FileHostKeys is a HostKeyStore in a JSON file (mode 0600), locked
// against other processes.
type FileHostKeys struct {
	Path string
	mu   sync.Mutex
}

var _ HostKeyStore = (*FileHostKeys)(nil)

// HostKey implements HostKeyStore.
func (f *FileHostKeys) HostKey(_ context.Context, host string) (string, error) {
	var key string
	err := f.update(func(m map[string]string) bool { key = m[host]; return false })
	return key, err
}

// RememberHostKey implements HostKeyStore.
func (f *FileHostKeys) RememberHostKey(_ context.Context, host, key string) error {
	return f.update(func(m map[string]string) bool { m[host] = key; return true })
}

// Forget unpins host's key, so the next connection pins the key it
// offers: what a user runs after reinstalling a machine.
func (f *FileHostKeys) Forget(host string) error {
	return f.update(func(m map[string]string) bool {
		_, ok := m[host]
		delete(m, host)
		return ok
	})
}

func (f *FileHostKeys) update(fn func(map[string]string) (changed bool)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return fmt.Errorf("host keys: %w", err)
	}
	lock, err := os.OpenFile(f.Path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("host keys: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock host keys: %w", err)
	}
	m := map[string]string{}
	data, err := os.ReadFile(f.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read host keys: %w", err)
	default:
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("read host keys %s: %w", f.Path, err)
		}
	}
	if !fn(m) {
		return nil
	}
	data, err = json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := f.Path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write host keys: %w", err)
	}
	if err := os.Rename(tmp, f.Path); err != nil {
		return fmt.Errorf("write host keys: %w", err)
	}
	return nil
}
