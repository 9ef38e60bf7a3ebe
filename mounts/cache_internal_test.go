package mounts

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The cache evicts clean, unused files, least recently used first, and
// never a file not yet uploaded.
func TestCacheEvictsLRU(t *testing.T) {
	st := NewLocal(t.TempDir())
	for _, k := range []string{"a", "b", "c"} {
		if err := st.Write(context.Background(), k, bytes.NewReader(make([]byte, 100)), 100); err != nil {
			t.Fatal(err)
		}
	}
	spec := MountSpec{Dst: "x", URL: st.URL(), Mode: ModeMountCached, CacheDir: t.TempDir(), CacheBytes: 250,
		ChunkSize: 64, WriteBack: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	if err := spec.defaults(); err != nil {
		t.Fatal(err)
	}
	c, err := openCache(st, spec, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	read := func(key string) {
		t.Helper()
		e, err := st.Stat(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		ce, err := c.open(key, &e, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.waitFetched(ce); err != nil {
			t.Fatal(err)
		}
		c.release(ce, false)
	}
	cached := func() []string {
		c.mu.Lock()
		defer c.mu.Unlock()
		var keys []string
		for k := range c.entries {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return keys
	}
	read("a")
	read("b")
	read("a") // now b is the least recently used
	read("c")
	if diff := cmp.Diff([]string{"a", "c"}, cached()); diff != "" {
		t.Errorf("cached after eviction (-want +got):\n%s", diff)
	}
	// A new file, written and closed but not uploaded, stays.
	ce, err := c.open("new", nil, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.writeAt(ce, make([]byte, 200), 0); err != nil {
		t.Fatal(err)
	}
	c.release(ce, true)
	read("b")
	got := cached()
	if !slices.Contains(got, "new") {
		t.Errorf("a file not yet uploaded was evicted: cache holds %v", got)
	}
	if p := c.pending(); p.Files != 1 || p.Bytes != 200 {
		t.Errorf("pending %+v; want 1 file of 200 bytes", p)
	}
}
