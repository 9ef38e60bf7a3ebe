package mounts_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/mounts"
	"github.com/sky-coord/sky-coord/mounts/storetest"
	"github.com/sky-coord/sky-coord/testenv/objstore"
)

// seed writes objects and returns the tree Copy of "data" should make.
func seedCopy(t *testing.T, st mounts.Store) map[string]string {
	big := string(storetest.Random(3<<20 + 777))
	objs := map[string]string{
		"data/a.txt":       "alpha",
		"data/sub/big.bin": big,
		"data/sub/empty":   "",
		"data/deep/x/y/z":  "zed",
		"data/marker/":     "",
		"other/skip":       "not copied",
		"database":         "not under data/",
	}
	for i := range 40 {
		objs["data/many/f"+string(rune('a'+i%26))+string(rune('a'+i/26))] = strings.Repeat("m", i)
	}
	want := map[string]string{}
	for k, v := range objs {
		storetest.Put(t, st, k, []byte(v))
		if rel, ok := strings.CutPrefix(k, "data/"); ok {
			want[rel] = v
		}
	}
	for _, d := range []string{"sub/", "deep/", "deep/x/", "deep/x/y/", "many/", "marker/"} {
		want[d] = ""
	}
	return want
}

func TestCopy(t *testing.T) {
	s3 := objstore.StartS3(t, objstore.Options{Buckets: []string{"copy"}})
	s3.Setenv(t)
	setCABundle(t)
	s3st, err := mounts.NewS3(context.Background(), "copy", mounts.S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	local := mounts.NewLocal(t.TempDir())
	for _, st := range []mounts.Store{s3st, local} {
		t.Run(strings.SplitN(st.URL(), ":", 2)[0], func(t *testing.T) {
			want := seedCopy(t, st)
			if strings.HasPrefix(st.URL(), "file:") {
				// A directory marker is no object in a directory store.
				delete(want, "marker/")
			}
			hs := &hookStore{Store: st}
			dst := filepath.Join(t.TempDir(), "dst")
			var calls int
			var last mounts.CopyProgress
			got, err := mounts.Copy(context.Background(), hs, "data", dst, mounts.CopyOptions{
				Concurrency: 8, PartSize: 1 << 20,
				Progress: func(p mounts.CopyProgress) { calls++; last = p },
			})
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if diff := cmp.Diff(want, tree(t, dst)); diff != "" {
				t.Errorf("copied tree (-want +got):\n%s", diff)
			}
			wantProg := mounts.CopyProgress{Files: 44, FilesTotal: 44, Bytes: got.BytesTotal, BytesTotal: got.BytesTotal}
			if diff := cmp.Diff(wantProg, got); diff != "" {
				t.Errorf("progress (-want +got):\n%s", diff)
			}
			if calls == 0 || last != got {
				t.Errorf("Progress called %d times, last %+v; want at least once, last %+v", calls, last, got)
			}
			if m := hs.maxInflight.Load(); m < 2 || m > 8 {
				t.Errorf("%d reads in flight at most; want 2..8", m)
			}
			// The big object went as 4 ranges of at most 1 MiB.
			if r := hs.reads.Load(); r != 41+4 {
				t.Errorf("%d reads; want %d (one per non-empty small object, 4 for the big one)", r, 41+4)
			}

			// A prefix that names one object copies that object to dst.
			one := filepath.Join(t.TempDir(), "one.txt")
			if _, err := mounts.Copy(context.Background(), st, "data/a.txt", one, mounts.CopyOptions{}); err != nil {
				t.Fatalf("Copy of one object: %v", err)
			}
			if b, _ := os.ReadFile(one); string(b) != "alpha" {
				t.Errorf("one object copied as %q", b)
			}
		})
	}
}

func TestCopyFailures(t *testing.T) {
	st := mounts.NewLocal(t.TempDir())
	seedCopy(t, st)
	boom := errors.New("connection reset by peer")
	tests := []struct {
		name    string
		store   mounts.Store
		prefix  string
		wantIs  error
		wantMsg string
	}{
		{
			name: "read fails",
			store: &hookStore{Store: st, read: func(key string, off, n int64) error {
				return map[bool]error{true: boom}[key == "data/sub/big.bin" && off > 0]
			}},
			prefix:  "data/",
			wantIs:  boom,
			wantMsg: "copy file://" + mustRoot(st) + "/data/sub/big.bin to ",
		},
		{
			name:    "short body",
			store:   &truncatingStore{Store: st, key: "data/sub/big.bin"},
			prefix:  "data",
			wantMsg: "data/sub/big.bin",
		},
		{
			name:    "nothing there",
			store:   st,
			prefix:  "nope",
			wantIs:  mounts.ErrNotExist,
			wantMsg: "nope",
		},
		{
			name:    "missing bucket",
			store:   mounts.NewLocal(filepath.Join(t.TempDir(), "gone")),
			prefix:  "",
			wantIs:  mounts.ErrBucketNotExist,
			wantMsg: "gone",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			_, err := mounts.Copy(context.Background(), tc.store, tc.prefix, dst, mounts.CopyOptions{PartSize: 1 << 20, Concurrency: 4})
			if err == nil {
				t.Fatal("Copy succeeded; want an error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v; want one matching %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
			// A failed object leaves no partial file behind.
			if tc.name == "read fails" {
				if _, err := os.Stat(filepath.Join(dst, "sub/big.bin")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("partial file left: %v", err)
				}
			}
		})
	}
}

func mustRoot(st mounts.Store) string { return strings.TrimPrefix(st.URL(), "file://") }

// COPY through Mount: the files are there when Mount returns, and stay
// after Unmount.
func TestMountCopyMode(t *testing.T) {
	dir := t.TempDir()
	st := mounts.NewLocal(dir)
	storetest.Put(t, st, "d/f", []byte("f"))
	dst := filepath.Join(t.TempDir(), "copy")
	m, err := mounts.Mount(context.Background(), mounts.MountSpec{Dst: dst, URL: "file://" + dir + "/d", Mode: mounts.ModeCopy})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	if err := m.Flush(context.Background(), nil); err != nil {
		t.Errorf("Flush of a COPY mount: %v", err)
	}
	if err := m.Unmount(context.Background()); err != nil {
		t.Errorf("Unmount of a COPY mount: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "f")); err != nil || string(b) != "f" {
		t.Errorf("copied file reads %q, %v", b, err)
	}
}
