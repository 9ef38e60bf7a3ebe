package bootstrap

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
)

// gzipped holds compressed agent binaries by the sha256 of their content,
// so bootstrapping many nodes compresses each binary once.
var gzipped = struct {
	mu    sync.Mutex
	bySum map[string]*gzEntry
	order []string // oldest first
}{bySum: map[string]*gzEntry{}}

// gzKeep is how many compressed binaries are kept (one per architecture,
// and a previous build).
const gzKeep = 4

type gzEntry struct {
	once sync.Once
	data []byte
	err  error
}

// sums caches the sha256 of local files by path, size and modification
// time and identity: Ensure on N nodes reads the agent binary once.
var sums = struct {
	mu sync.Mutex
	m  map[string]sumEntry
}{m: map[string]sumEntry{}}

type sumEntry struct {
	info os.FileInfo
	sum  string
}

// fileSHA256 returns the hex sha256 of a local file.
func fileSHA256(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	sums.mu.Lock()
	e, ok := sums.m[p]
	sums.mu.Unlock()
	if ok && os.SameFile(e.info, st) && e.info.Size() == st.Size() && e.info.ModTime().Equal(st.ModTime()) {
		return e.sum, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	sums.mu.Lock()
	sums.m[p] = sumEntry{info: st, sum: sum}
	sums.mu.Unlock()
	return sum, nil
}

// compressedFile returns the gzip stream of the file at p, whose sha256 is
// sum; it fails when the file no longer has that content.
func compressedFile(p, sum string) ([]byte, error) {
	gzipped.mu.Lock()
	e, ok := gzipped.bySum[sum]
	if !ok {
		e = &gzEntry{}
		gzipped.bySum[sum] = e
		gzipped.order = append(gzipped.order, sum)
		if len(gzipped.order) > gzKeep {
			delete(gzipped.bySum, gzipped.order[0])
			gzipped.order = gzipped.order[1:]
		}
	}
	gzipped.mu.Unlock()
	e.once.Do(func() { e.data, e.err = compress(p, sum) })
	if e.err != nil {
		gzipped.mu.Lock()
		if gzipped.bySum[sum] == e {
			delete(gzipped.bySum, sum) // let the next call try again
		}
		gzipped.mu.Unlock()
	}
	return e.data, e.err
}

// compress gzips a file at the fastest level: on a LAN the upload of the
// larger stream costs less than stronger compression would.
func compress(p, sum string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(zw, io.TeeReader(f, h)); err != nil {
		return nil, fmt.Errorf("compress %s: %w", p, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress %s: %w", p, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return nil, fmt.Errorf("compress %s: the file changed while it was read (sha256 %s, was %s)", p, got, sum)
	}
	return buf.Bytes(), nil
}

// Prepare hashes and compresses agent binaries ahead of their first
// upload, so the first launch after a coordinator starts does not wait
// for it. Errors are left for the upload to report.
func Prepare(paths ...string) {
	for _, p := range paths {
		if p == "" {
			continue
		}
		if sum, err := fileSHA256(p); err == nil {
			_, _ = compressedFile(p, sum)
		}
	}
}
