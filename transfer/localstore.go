package transfer

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// storeIDFile holds a DiskStore's id: random, written when the store is
// made, so that a client can tell that a directory it sees is the very
// store a server reports.
const storeIDFile = "store-id"

// ID returns the store's id.
func (s *DiskStore) ID() string { return s.id }

// readStoreID reads the store's id, making it first for a new store.
func readStoreID(dir string) (string, error) {
	p := filepath.Join(dir, storeIDFile)
	if data, err := os.ReadFile(p); err == nil {
		return strings.TrimSpace(string(data)), nil
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b[:])
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) { // another process made it first
		data, err := os.ReadFile(p)
		return strings.TrimSpace(string(data)), err
	}
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(id + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return id, err
}

// OpenLocalStore opens, for a client on its server's machine, the store
// the server reported: directory dir, id id. It fails unless dir holds
// that very store and this process owns it (what it adds there, the
// server can read); the client then talks to the server instead.
func OpenLocalStore(dir, id string) (*DiskStore, error) {
	if !filepath.IsAbs(dir) || id == "" {
		return nil, fmt.Errorf("chunk store %q: not a local path", dir)
	}
	data, err := os.ReadFile(filepath.Join(dir, storeIDFile))
	if err != nil {
		return nil, fmt.Errorf("chunk store %s: %w", dir, err)
	}
	if strings.TrimSpace(string(data)) != id {
		return nil, fmt.Errorf("chunk store %s: another store than the server's", dir)
	}
	fi, err := os.Stat(filepath.Join(dir, packsDir))
	if err != nil {
		return nil, fmt.Errorf("chunk store %s: %w", dir, err)
	}
	if !ownedByMe(fi) {
		return nil, fmt.Errorf("chunk store %s: owned by another user", dir)
	}
	return NewDiskStore(dir)
}
