package mounts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The journal is a directory with one small file per pending upload,
// named after its key's hash. A record is written to a temporary file,
// synced, renamed into place and its directory synced, so it is either
// wholly there or not at all after a crash.

func recordPath(dir, key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(dir, hex.EncodeToString(sum[:16])+".json")
}

func writeRecord(dir string, rec journalRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".rec-")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), recordPath(dir, rec.Key))
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return syncDir(dir)
}

func removeRecord(dir, key string) error {
	if err := os.Remove(recordPath(dir, key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type loadedRecord struct {
	rec  journalRecord
	path string
}

// readJournal reads every record; unreadable ones are an error, since
// each stands for data that is in no bucket yet.
func readJournal(dir string) ([]loadedRecord, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read upload journal %s: %w", dir, err)
	}
	var out []loadedRecord
	for _, de := range ents {
		p := filepath.Join(dir, de.Name())
		if strings.HasPrefix(de.Name(), ".rec-") {
			os.Remove(p) // a record never renamed into place
			continue
		}
		if !strings.HasSuffix(de.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read upload journal record %s: %w", p, err)
		}
		var rec journalRecord
		if err := json.Unmarshal(b, &rec); err != nil || rec.Key == "" || rec.File == "" {
			return nil, fmt.Errorf("upload journal record %s is damaged (%v): move it away to go on without that upload", p, err)
		}
		out = append(out, loadedRecord{rec: rec, path: p})
	}
	return out, nil
}
