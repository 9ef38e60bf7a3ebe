// Package storetest is the contract every mounts.Store passes: one suite,
// run by each store's tests against a real or in-process endpoint.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/mounts"
)

// Factory returns a store for bucket, which does not exist yet. Stores
// should use a small multipart part size (5 MiB) so that Run's large
// object goes up in several parts.
type Factory func(t *testing.T, bucket string) mounts.Store

var seq atomic.Int64

// bucketName is unique per test process and valid on every store.
func bucketName() string {
	return fmt.Sprintf("contract-%d-%d", time.Now().UnixNano()%1e9, seq.Add(1))
}

// Run runs the contract against the stores newStore makes.
func Run(t *testing.T, newStore Factory) {
	fresh := func(t *testing.T) mounts.Store {
		t.Helper()
		st := newStore(t, bucketName())
		t.Cleanup(func() { _ = st.Close() })
		if err := st.CreateBucket(context.Background()); err != nil {
			t.Fatalf("CreateBucket: %v", err)
		}
		return st
	}
	t.Run("BucketLifecycle", func(t *testing.T) { testBucketLifecycle(t, newStore) })
	t.Run("WriteStatRead", func(t *testing.T) { testWriteStatRead(t, fresh(t)) })
	t.Run("Ranges", func(t *testing.T) { testRanges(t, fresh(t)) })
	t.Run("List", func(t *testing.T) { testList(t, fresh(t)) })
	t.Run("LargeObject", func(t *testing.T) { testLarge(t, fresh(t)) })
	t.Run("FailedWriteLeavesNothing", func(t *testing.T) { testFailedWrite(t, fresh(t)) })
	t.Run("OverwriteAndDelete", func(t *testing.T) { testOverwriteDelete(t, fresh(t)) })
	t.Run("Copy", func(t *testing.T) { testCopy(t, fresh(t)) })
	t.Run("MissingBucket", func(t *testing.T) { testMissingBucket(t, newStore) })
}

// Put writes data as key or fails the test.
func Put(t testing.TB, st mounts.Store, key string, data []byte) {
	t.Helper()
	if err := st.Write(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Write %s: %v", key, err)
	}
}

// Get reads key whole or fails the test.
func Get(t testing.TB, st mounts.Store, key string) []byte {
	t.Helper()
	b, err := ReadAll(context.Background(), st, key, 0, -1)
	if err != nil {
		t.Fatalf("Read %s: %v", key, err)
	}
	return b
}

// ReadAll reads a range of key.
func ReadAll(ctx context.Context, st mounts.Store, key string, off, length int64) ([]byte, error) {
	rc, err := st.Read(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return b, err
}

// Keys lists every key under prefix, sorted; prefix entries keep their "/".
func Keys(t testing.TB, st mounts.Store, prefix string, delimited bool) []string {
	t.Helper()
	var keys []string
	for e, err := range st.List(context.Background(), prefix, mounts.ListOptions{Delimited: delimited}) {
		if err != nil {
			t.Fatalf("List %q: %v", prefix, err)
		}
		keys = append(keys, e.Key)
	}
	slices.Sort(keys)
	return keys
}

// Random returns n random bytes.
func Random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func testBucketLifecycle(t *testing.T, newStore Factory) {
	ctx := context.Background()
	st := newStore(t, bucketName())
	defer st.Close()
	if ok, err := st.BucketExists(ctx); err != nil || ok {
		t.Fatalf("BucketExists before create = %v, %v; want false, nil", ok, err)
	}
	if err := st.CreateBucket(ctx); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	if ok, err := st.BucketExists(ctx); err != nil || !ok {
		t.Fatalf("BucketExists after create = %v, %v; want true, nil", ok, err)
	}
	if err := st.CreateBucket(ctx); !errors.Is(err, mounts.ErrBucketExists) {
		t.Errorf("second CreateBucket = %v; want ErrBucketExists", err)
	}
	Put(t, st, "a", []byte("1"))
	Put(t, st, "d/b", []byte("2"))
	if err := st.DeleteBucket(ctx); err != nil {
		t.Fatalf("DeleteBucket of a bucket holding objects: %v", err)
	}
	if ok, err := st.BucketExists(ctx); err != nil || ok {
		t.Fatalf("BucketExists after delete = %v, %v; want false, nil", ok, err)
	}
	if err := st.DeleteBucket(ctx); !errors.Is(err, mounts.ErrBucketNotExist) {
		t.Errorf("DeleteBucket of a missing bucket = %v; want ErrBucketNotExist", err)
	}
}

func testWriteStatRead(t *testing.T, st mounts.Store) {
	ctx := context.Background()
	data := []byte("hello, bucket\n")
	Put(t, st, "dir/hello.txt", data)
	e, err := st.Stat(ctx, "dir/hello.txt")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if e.Key != "dir/hello.txt" || e.Size != int64(len(data)) || e.IsPrefix || e.ModTime.IsZero() {
		t.Errorf("Stat = %+v; want key dir/hello.txt, size %d, a modification time", e, len(data))
	}
	if got := Get(t, st, "dir/hello.txt"); !bytes.Equal(got, data) {
		t.Errorf("Read = %q; want %q", got, data)
	}
	if _, err := st.Stat(ctx, "dir/missing"); !errors.Is(err, mounts.ErrNotExist) {
		t.Errorf("Stat of a missing key = %v; want ErrNotExist", err)
	}
	if _, err := st.Stat(ctx, "dir"); !errors.Is(err, mounts.ErrNotExist) {
		t.Errorf("Stat of a prefix = %v; want ErrNotExist", err)
	}
	_, err = ReadAll(ctx, st, "dir/missing", 0, -1)
	if !errors.Is(err, mounts.ErrNotExist) {
		t.Errorf("Read of a missing key = %v; want ErrNotExist", err)
	}
	if err == nil || !strings.Contains(err.Error(), st.URL()+"/dir/missing") {
		t.Errorf("error %q does not name the object", err)
	}
	Put(t, st, "empty", nil)
	if e, err := st.Stat(ctx, "empty"); err != nil || e.Size != 0 {
		t.Errorf("Stat(empty) = %+v, %v; want size 0", e, err)
	}
	if got := Get(t, st, "empty"); len(got) != 0 {
		t.Errorf("Read(empty) = %q", got)
	}
}

func testRanges(t *testing.T, st mounts.Store) {
	data := []byte("0123456789abcdef")
	Put(t, st, "r", data)
	tests := []struct {
		off, length int64
		want        string
	}{
		{0, -1, "0123456789abcdef"},
		{0, 5, "01234"},
		{3, 4, "3456"},
		{10, -1, "abcdef"},
		{15, 10, "f"},
		{16, 5, ""},
		{16, -1, ""},
		{40, -1, ""},
		{4, 0, ""},
	}
	for _, tc := range tests {
		got, err := ReadAll(context.Background(), st, "r", tc.off, tc.length)
		if err != nil {
			t.Errorf("Read(off %d, len %d): %v", tc.off, tc.length, err)
			continue
		}
		if diff := cmp.Diff(tc.want, string(got)); diff != "" {
			t.Errorf("Read(off %d, len %d) (-want +got):\n%s", tc.off, tc.length, diff)
		}
	}
}

func testList(t *testing.T, st mounts.Store) {
	for _, k := range []string{"a.txt", "b/1", "b/2", "b/c/3", "ba", "d/"} {
		Put(t, st, k, []byte(k))
	}
	// The directory marker "d/" is an object in buckets and a directory
	// on disk: only its delimited form is promised.
	all := Keys(t, st, "", false)
	all = slices.DeleteFunc(all, func(k string) bool { return k == "d/" })
	tests := []struct {
		prefix    string
		delimited bool
		want      []string
	}{
		{"", false, []string{"a.txt", "b/1", "b/2", "b/c/3", "ba"}},
		{"", true, []string{"a.txt", "b/", "ba", "d/"}},
		{"b/", false, []string{"b/1", "b/2", "b/c/3"}},
		{"b/", true, []string{"b/1", "b/2", "b/c/"}},
		{"b", true, []string{"b/", "ba"}},
		{"b/c", false, []string{"b/c/3"}},
		{"nope/", false, nil},
		{"nope/", true, nil},
	}
	for _, tc := range tests {
		got := Keys(t, st, tc.prefix, tc.delimited)
		if tc.prefix == "" && !tc.delimited {
			got = all
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("List(%q, delimited %v) (-want +got):\n%s", tc.prefix, tc.delimited, diff)
		}
	}
	for e, err := range st.List(context.Background(), "b/", mounts.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Size != int64(len(e.Key)) || e.IsPrefix {
			t.Errorf("List entry %+v: want size %d", e, len(e.Key))
		}
	}
	// Stopping early is allowed.
	for range st.List(context.Background(), "", mounts.ListOptions{}) {
		break
	}
}

func testLarge(t *testing.T, st mounts.Store) {
	data := Random(12<<20 + 12345)
	ctx := context.Background()
	// Unknown size: streamed in parts.
	if err := st.Write(ctx, "big/unknown", io.MultiReader(bytes.NewReader(data)), -1); err != nil {
		t.Fatalf("Write of unknown size: %v", err)
	}
	// Known size from a plain reader, and from a seekable one.
	if err := st.Write(ctx, "big/known", io.MultiReader(bytes.NewReader(data)), int64(len(data))); err != nil {
		t.Fatalf("Write of known size: %v", err)
	}
	if err := st.Write(ctx, "big/seekable", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Write from a seekable reader: %v", err)
	}
	for _, k := range []string{"big/unknown", "big/known", "big/seekable"} {
		if got := Get(t, st, k); !bytes.Equal(got, data) {
			t.Errorf("%s: read %d bytes that differ from the %d written", k, len(got), len(data))
		}
		if e, err := st.Stat(ctx, k); err != nil || e.Size != int64(len(data)) {
			t.Errorf("Stat(%s) = %+v, %v; want size %d", k, e, err, len(data))
		}
	}
	got, err := ReadAll(ctx, st, "big/known", 7<<20, 1<<20)
	if err != nil || !bytes.Equal(got, data[7<<20:8<<20]) {
		t.Errorf("ranged read across parts: %d bytes, %v", len(got), err)
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func testFailedWrite(t *testing.T, st mounts.Store) {
	ctx := context.Background()
	tests := []struct {
		name string
		r    io.Reader
		size int64
	}{
		{"short", io.MultiReader(bytes.NewReader([]byte("12345"))), 10},
		{"long", io.MultiReader(bytes.NewReader([]byte("123456789012"))), 10},
		{"reader fails", &failingReader{data: []byte("123"), err: errors.New("disk on fire")}, -1},
		{"large reader fails", &failingReader{data: Random(6 << 20), err: errors.New("disk on fire")}, -1},
	}
	for _, tc := range tests {
		key := "failed/" + strings.ReplaceAll(tc.name, " ", "-")
		if err := st.Write(ctx, key, tc.r, tc.size); err == nil {
			t.Errorf("%s: Write succeeded; want an error", tc.name)
		}
		if _, err := st.Stat(ctx, key); !errors.Is(err, mounts.ErrNotExist) {
			t.Errorf("%s: after a failed Write, Stat = %v; want ErrNotExist", tc.name, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := st.Write(cctx, "failed/cancelled", bytes.NewReader([]byte("x")), 1); err == nil {
		t.Errorf("Write with a cancelled context succeeded")
	}
	if _, err := st.Stat(ctx, "failed/cancelled"); !errors.Is(err, mounts.ErrNotExist) {
		t.Errorf("after a cancelled Write, Stat = %v; want ErrNotExist", err)
	}
	if got := Keys(t, st, "", false); len(got) != 0 {
		t.Errorf("failed writes left %v", got)
	}
}

func testOverwriteDelete(t *testing.T, st mounts.Store) {
	ctx := context.Background()
	Put(t, st, "k", []byte("first"))
	e1, err := st.Stat(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	Put(t, st, "k", []byte("second!"))
	e2, err := st.Stat(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if got := Get(t, st, "k"); string(got) != "second!" {
		t.Errorf("after overwrite Read = %q", got)
	}
	if e1.ETag != "" && e1.ETag == e2.ETag {
		t.Errorf("ETag %q did not change with the content", e1.ETag)
	}
	if err := st.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := st.Stat(ctx, "k"); !errors.Is(err, mounts.ErrNotExist) {
		t.Errorf("Stat after Delete = %v; want ErrNotExist", err)
	}
	if err := st.Delete(ctx, "k"); err != nil {
		t.Errorf("Delete of a missing key = %v; want nil", err)
	}
}

func testCopy(t *testing.T, st mounts.Store) {
	c, ok := st.(mounts.Copier)
	if !ok {
		t.Skip("store has no server-side copy")
	}
	Put(t, st, "src/a b+c", []byte("payload"))
	if err := c.CopyObject(context.Background(), "src/a b+c", "dst/x"); err != nil {
		t.Fatalf("CopyObject: %v", err)
	}
	if got := Get(t, st, "dst/x"); string(got) != "payload" {
		t.Errorf("copy holds %q", got)
	}
	if got := Get(t, st, "src/a b+c"); string(got) != "payload" {
		t.Errorf("source holds %q after copy", got)
	}
}

func testMissingBucket(t *testing.T, newStore Factory) {
	st := newStore(t, bucketName())
	defer st.Close()
	for _, err := range st.List(context.Background(), "", mounts.ListOptions{}) {
		if !errors.Is(err, mounts.ErrBucketNotExist) {
			t.Errorf("List of a missing bucket = %v; want ErrBucketNotExist", err)
		}
		return
	}
	t.Errorf("List of a missing bucket yielded nothing; want ErrBucketNotExist")
}
