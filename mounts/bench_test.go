//go:build linux

package mounts_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/sky-coord/sky-coord/mounts"
	"github.com/sky-coord/sky-coord/mounts/storetest"
	"github.com/sky-coord/sky-coord/testenv/objstore"
)

// benchStore is a fake S3 bucket holding one 256 MiB object and 256
// objects of 256 KiB.
func benchStore(b *testing.B) mounts.Store {
	s := objstore.StartS3(b, objstore.Options{Buckets: []string{"bench"}})
	for k, v := range s.Env() {
		b.Setenv(k, v)
	}
	st, err := mounts.NewS3(context.Background(), "bench", mounts.S3Options{})
	if err != nil {
		b.Fatal(err)
	}
	storetest.Put(b, st, "big/one", storetest.Random(256<<20))
	small := storetest.Random(256 << 10)
	for i := range 256 {
		storetest.Put(b, st, "small/"+string(rune('a'+i/26))+string(rune('a'+i%26))+string(rune('0'+i%10)), small)
	}
	return st
}

func BenchmarkCopy(b *testing.B) {
	st := benchStore(b)
	for prefix, size := range map[string]int64{"big": 256 << 20, "small": 256 * 256 << 10} {
		b.Run(prefix, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if _, err := mounts.Copy(context.Background(), st, prefix, filepath.Join(b.TempDir(), "dst"), mounts.CopyOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMountRead(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for FUSE")
	}
	st := benchStore(b)
	for _, mode := range []mounts.Mode{mounts.ModeMount, mounts.ModeMountCached} {
		b.Run(string(mode), func(b *testing.B) {
			dst := filepath.Join(b.TempDir(), "mnt")
			m, err := mounts.Mount(context.Background(), mounts.MountSpec{Dst: dst, URL: "s3://bench", Mode: mode, Store: st, CacheDir: b.TempDir(), CacheBytes: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Unmount(context.Background())
			b.SetBytes(256 << 20)
			buf := make([]byte, 1<<20)
			for b.Loop() {
				f, err := os.Open(filepath.Join(dst, "big/one"))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, f, buf); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}
