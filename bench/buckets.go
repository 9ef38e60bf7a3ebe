package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sky-coord/sky-coord/mounts"
	"github.com/sky-coord/sky-coord/testenv/objstore"
)

// bucketsBench times COPY and MOUNT from a loopback S3 endpoint (issue
// 7) beside rclone on the same objects in the same run.
type bucketsBench struct {
	trials  int
	verbose bool
	// rcloneFlags are added to every rclone command (to compare with a
	// tuned rclone; the report names them).
	rcloneFlags []string
}

// The fixture: under copy/ a few large and many small objects, 1 GiB in
// all; under mount/ one 1 GiB object.
const (
	bigCount    = 3
	bigSize     = 256 << 20
	smallCount  = 2000
	smallSize   = 128 << 10
	copyObjects = bigCount + smallCount
	copyBytes   = bigCount*bigSize + smallCount*smallSize
	mountSize   = 1 << 30
	mountKey    = "mount/one.bin"
	bucket      = "bench"
	rcloneName  = "skybench" // the rclone remote, defined by environment
)

func (b *bucketsBench) run(ctx context.Context) string {
	var out strings.Builder
	fmt.Fprintf(&out, "## Buckets: COPY and MOUNT vs rclone\n\n")
	body, err := b.measure(ctx)
	if err != nil {
		fmt.Fprintf(&out, "**Failed**:\n\n```\n%v\n```\n\n", err)
		markFailed()
		return out.String()
	}
	out.WriteString(body)
	return out.String()
}

// side is one tool's figures for one case.
type side struct {
	took   []time.Duration // per trial, in trial order
	setup  []time.Duration // MOUNT: until mounted
	note   string          // why there are no figures
	failed error
}

func (b *bucketsBench) measure(ctx context.Context) (string, error) {
	s3, err := objstore.NewS3(objstore.Options{Buckets: []string{bucket}})
	if err != nil {
		return "", err
	}
	stop := atCleanup(func() { _ = s3.Close() })
	defer stop()
	seedStart := time.Now()
	if err := seed(ctx, s3); err != nil {
		return "", fmt.Errorf("seed the S3 endpoint: %w", err)
	}
	seeded := time.Since(seedStart)
	// sky-coord finds the endpoint and credentials as an agent would: in
	// the AWS environment variables. AWS_CA_BUNDLE stays as it is.
	restore := setenvAll(s3.Env())
	defer restore()

	scratch, onTmpfs, err := scratchDir()
	if err != nil {
		return "", err
	}
	rmScratch := atCleanup(func() { _ = os.RemoveAll(scratch) })
	defer rmScratch()
	quiet := slog.New(slog.DiscardHandler)
	if b.verbose {
		quiet = slog.Default()
	}

	rc, rcloneVersion := newRclone(s3.URL, scratch, b.rcloneFlags)

	// COPY.
	var oursCopy, rcCopy side
	if rc == nil {
		rcCopy.note = rcloneVersion
	}
	for i := 0; i < b.trials; i++ {
		ours := func() error {
			d, err := copyOurs(ctx, filepath.Join(scratch, "ours-copy"), quiet)
			oursCopy.took = append(oursCopy.took, d)
			return err
		}
		ref := func() error {
			if rc == nil || rcCopy.failed != nil {
				return nil
			}
			d, err := rc.copy(ctx, filepath.Join(scratch, "rclone-copy"))
			if err != nil {
				rcCopy.failed = err
				return nil
			}
			rcCopy.took = append(rcCopy.took, d)
			return nil
		}
		if err := alternate(ctx, i, ours, ref); err != nil {
			return "", fmt.Errorf("COPY, trial %d: %w", i+1, err)
		}
	}

	// MOUNT.
	var oursMount, rcMount side
	rcm := rc // nil when rclone cannot mount here
	why := fuseUnavailable()
	switch {
	case why != "":
		oursMount.note, rcMount.note = why, why
	case rc == nil:
		rcMount.note = rcloneVersion
	default:
		if _, err := exec.LookPath("fusermount3"); err != nil {
			rcMount.note = "rclone mounts with fusermount3, which is missing (`apt-get install -y fuse3`)"
			rcm = nil
		}
	}
	if why == "" {
		for i := 0; i < b.trials; i++ {
			ours := func() error {
				setup, read, err := mountOurs(ctx, filepath.Join(scratch, "ours-mnt"), quiet)
				oursMount.setup = append(oursMount.setup, setup)
				oursMount.took = append(oursMount.took, read)
				return err
			}
			ref := func() error {
				if rcm == nil || rcMount.failed != nil {
					return nil
				}
				setup, read, err := rcm.mount(ctx, filepath.Join(scratch, "rclone-mnt"))
				if err != nil {
					rcMount.failed = err
					return nil
				}
				rcMount.setup = append(rcMount.setup, setup)
				rcMount.took = append(rcMount.took, read)
				return nil
			}
			if err := alternate(ctx, i, ours, ref); err != nil {
				return "", fmt.Errorf("MOUNT, trial %d: %w", i+1, err)
			}
		}
	}

	return b.report(reportInput{
		rcloneVersion: rcloneVersion, rcloneOK: rc != nil, onTmpfs: onTmpfs, scratch: scratch, seeded: seeded,
		oursCopy: oursCopy, rcCopy: rcCopy, oursMount: oursMount, rcMount: rcMount,
	}), nil
}

// alternate runs both sides of trial i, sky-coord first in even trials.
func alternate(ctx context.Context, i int, ours, ref func() error) error {
	first, second := ours, ref
	if i%2 == 1 {
		first, second = ref, ours
	}
	for _, f := range []func() error{first, second} {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f(); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// seed puts the fixture straight into the endpoint's memory (no HTTP),
// on every core (the endpoint hashes each object). The bytes are
// pseudo-random, so nothing on the way can compress them, and generated
// as the endpoint reads them: it keeps its own copy of each object.
func seed(ctx context.Context, s3 *objstore.S3) error {
	type object struct {
		key  string
		size int64
	}
	objects := []object{{mountKey, mountSize}}
	for i := 0; i < bigCount; i++ {
		objects = append(objects, object{fmt.Sprintf("copy/large/%d.bin", i), bigSize})
	}
	for i := 0; i < smallCount; i++ {
		objects = append(objects, object{fmt.Sprintf("copy/small/%02d/%04d.bin", i/100, i), smallSize})
	}
	work := make(chan int)
	errs := make([]error, runtime.NumCPU())
	var wg sync.WaitGroup
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if errs[w] != nil {
					continue
				}
				o := objects[i]
				var key [32]byte
				copy(key[:], fmt.Sprintf("sky-coord bench object %d", i))
				body := io.LimitReader(rand.NewChaCha8(key), o.size)
				if _, err := s3.Backend.PutObject(bucket, o.key, map[string]string{}, body, o.size, nil); err != nil {
					errs[w] = fmt.Errorf("put %s: %w", o.key, err)
				}
			}
		}()
	}
	for i := range objects {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

// copyOurs runs COPY into dst, checks the result and removes it.
func copyOurs(ctx context.Context, dst string, log *slog.Logger) (time.Duration, error) {
	defer os.RemoveAll(dst)
	start := time.Now()
	m, err := mounts.Mount(ctx, mounts.MountSpec{Dst: dst, URL: "s3://" + bucket + "/copy", Mode: mounts.ModeCopy, Logger: log})
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("sky-coord COPY: %w", err)
	}
	if err := m.Unmount(ctx); err != nil {
		return took, fmt.Errorf("sky-coord COPY: close: %w", err)
	}
	return took, checkTree(dst)
}

// checkTree checks that a copy holds the fixture's file count and bytes.
func checkTree(dir string) error {
	var files int
	var size int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files++
		size += info.Size()
		return nil
	})
	if err != nil {
		return err
	}
	if files != copyObjects || size != copyBytes {
		return fmt.Errorf("copy in %s has %d files of %d bytes, want %d of %d", dir, files, size, copyObjects, copyBytes)
	}
	return nil
}

// mountOurs mounts mount/ in MOUNT mode at dir, reads the object once and
// unmounts.
func mountOurs(ctx context.Context, dir string, log *slog.Logger) (setup, read time.Duration, err error) {
	defer os.RemoveAll(dir)
	start := time.Now()
	m, err := mounts.Mount(ctx, mounts.MountSpec{Dst: dir, URL: "s3://" + bucket + "/mount", Mode: mounts.ModeMount, Logger: log})
	setup = time.Since(start)
	if err != nil {
		return setup, 0, fmt.Errorf("sky-coord MOUNT: %w", err)
	}
	unmount := atCleanup(func() {
		uctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if uerr := m.Unmount(uctx); uerr != nil && err == nil {
			err = fmt.Errorf("sky-coord MOUNT: unmount: %w", uerr)
		}
	})
	read, rerr := readFile(filepath.Join(dir, filepath.Base(mountKey)), mountSize)
	unmount()
	if rerr != nil {
		return setup, read, fmt.Errorf("sky-coord MOUNT: %w", rerr)
	}
	return setup, read, err
}

// readFile reads path sequentially with 1 MiB reads (io.Copy to
// io.Discard would read in 8 KiB pieces) and checks its length.
func readFile(path string, want int64) (time.Duration, error) {
	buf := make([]byte, 1<<20)
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return time.Since(start), fmt.Errorf("read %s at %d: %w", path, n, err)
		}
	}
	took := time.Since(start)
	if n != want {
		return took, fmt.Errorf("read %d bytes of %s, want %d", n, path, want)
	}
	return took, nil
}

// fuseUnavailable says why this process cannot mount FUSE file systems,
// or "".
func fuseUnavailable() string {
	if os.Geteuid() != 0 {
		return "FUSE mounts need root here (run `make bench` as root, as CI does)"
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "no /dev/fuse on this machine"
	}
	return ""
}

// scratchDir makes the directory copies and mount points go in: on
// tmpfs when /dev/shm has room for two copies, so disk writeback does not
// swing the figures.
func scratchDir() (string, bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err == nil && int64(st.Bavail)*st.Bsize > 3*copyBytes {
		if d, err := os.MkdirTemp("/dev/shm", "sky-coord-bench-"); err == nil {
			return d, true, nil
		}
	}
	d, err := os.MkdirTemp("", "sky-coord-bench-")
	return d, false, err
}

// setenvAll sets env and returns what puts the old values back.
func setenvAll(env map[string]string) func() {
	type old struct {
		v   string
		had bool
	}
	saved := map[string]old{}
	for k, v := range env {
		o, had := os.LookupEnv(k)
		saved[k] = old{o, had}
		_ = os.Setenv(k, v)
	}
	return func() {
		for k, o := range saved {
			if o.had {
				_ = os.Setenv(k, o.v)
			} else {
				_ = os.Unsetenv(k)
			}
		}
	}
}
