//go:build linux

package mounts_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/mounts"
	"github.com/sky-coord/sky-coord/mounts/storetest"
	"github.com/sky-coord/sky-coord/testenv/objstore"
)

const crashKey = "ckpt/model.bin"

var crashData = bytes.Repeat([]byte("checkpoint "), 300_000)

// TestCrashHelper is the agent that TestMountCachedCrash kills: it mounts
// MOUNT_CACHED, writes a file, and waits to be killed while the upload is
// held up.
func TestCrashHelper(t *testing.T) {
	if os.Getenv("SKY_MOUNTS_CRASH_HELPER") == "" {
		t.Skip("run by TestMountCachedCrash as its child process")
	}
	st, err := mounts.NewS3(context.Background(), "crash", mounts.S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := newGate(crashKey) // never opened
	dst := os.Getenv("CRASH_DST")
	_, err = mounts.Mount(context.Background(), mounts.MountSpec{Dst: dst, URL: "s3://crash", Mode: mounts.ModeMountCached,
		Store: &hookStore{Store: st, write: g.write}, CacheDir: os.Getenv("CRASH_CACHE"), WriteBack: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dst, "ckpt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, crashKey), crashData, 0o644); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	fmt.Println("UPLOADING")
	select {}
}

// An agent killed (SIGKILL) while uploading: the next mount of its cache
// directory (at the same path, where the dead mount still is) uploads the
// file, and Flush returns only once it is in the bucket.
func TestMountCachedCrash(t *testing.T) {
	needFUSE(t)
	s := objstore.StartS3(t, objstore.Options{Buckets: []string{"crash"}})
	s.Setenv(t)
	setCABundle(t)
	dst := filepath.Join(t.TempDir(), "mnt")
	cacheDir := t.TempDir()
	t.Cleanup(func() {
		// Should the test stop before the restart: no dead mount left behind.
		if ok, _ := mounts.IsMounted(dst); ok {
			_ = syscall.Unmount(dst, syscall.MNT_DETACH)
		}
	})

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SKY_MOUNTS_CRASH_HELPER=1", "CRASH_DST="+dst, "CRASH_CACHE="+cacheDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	uploading := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "UPLOADING" {
				uploading <- true
				return
			}
		}
		uploading <- false
	}()
	select {
	case ok := <-uploading:
		if !ok {
			cmd.Wait()
			t.Fatalf("helper ended before uploading:\n%s", stderr.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not start uploading within a minute:\n%s", stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	st, err := mounts.NewS3(context.Background(), "crash", mounts.S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(context.Background(), crashKey); !errors.Is(err, mounts.ErrNotExist) {
		t.Fatalf("object in the bucket before the restart: %v", err)
	}
	if ok, _ := mounts.IsMounted(dst); !ok {
		t.Errorf("the killed helper left no mount at %s; want a stale one for Mount to detach", dst)
	}
	m := mount(t, mounts.MountSpec{Dst: dst, URL: "s3://crash", Mode: mounts.ModeMountCached, Store: st, CacheDir: cacheDir})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Flush(ctx, nil); err != nil {
		t.Fatalf("Flush after restart: %v", err)
	}
	if got := storetest.Get(t, st, crashKey); !bytes.Equal(got, crashData) {
		t.Errorf("bucket holds %d bytes that differ from the %d written before the crash", len(got), len(crashData))
	}
	if b, err := os.ReadFile(filepath.Join(dst, crashKey)); err != nil || !bytes.Equal(b, crashData) {
		t.Errorf("the restarted mount reads %d bytes, %v", len(b), err)
	}
}
