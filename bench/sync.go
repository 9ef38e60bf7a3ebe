package main

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// syncBench measures the workdir sync (issue 6): a tree of about 200 MB
// (5,000 small files and a few 20 MB ones) synced to 8 local nodes by
// `exec`, beside one `rsync -a` of it and 8 parallel rsyncs in the same
// run; then a re-sync after one changed file beside an rsync no-op; and
// the bytes the client sent (what the coordinator's chunk store took in).
type syncBench struct {
	bin string
}

const syncNodes = 8

func (sb *syncBench) run(ctx context.Context) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Workdir sync to %d local nodes\n\n", syncNodes)
	if _, err := exec.LookPath("rsync"); err != nil {
		b.WriteString("Not measured: rsync (the reference) is not installed; `make test-deps` installs it.\n\n")
		return b.String()
	}
	e := newEnv(sb.bin)
	src := filepath.Join(e.dir, "code")
	treeBytes, files, err := makeTree(src)
	if err != nil {
		markFailed()
		fmt.Fprintf(&b, "**Failed**: make the tree: %v\n\n", err)
		return b.String()
	}
	task := fmt.Sprintf("num_nodes: %d\nworkdir: ./code\nrun: echo synced\n", syncNodes)
	if err := os.WriteFile(filepath.Join(e.dir, "sync.yaml"), []byte(task), 0o644); err != nil {
		die(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "up.yaml"), []byte(fmt.Sprintf("num_nodes: %d\nrun: echo up\n", syncNodes)), 0o644); err != nil {
		die(err)
	}
	e.run("launch", "-y", "-c", "syncb", "up.yaml")
	stopIfDone(ctx)
	chunks := filepath.Join(e.home, "server", "chunks")
	before := dirBytes(chunks)

	timed := func(args ...string) (time.Duration, error) {
		start := time.Now()
		out, err := e.cmd(args...).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("sky-coord %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return time.Since(start), nil
	}
	first, err := timed("exec", "syncb", "sync.yaml")
	if err != nil {
		markFailed()
		fmt.Fprintf(&b, "**Failed**: %v\n\n", err)
		return b.String()
	}
	egress := dirBytes(chunks) - before

	// References, same tree, same machine, same run.
	refDir, err := os.MkdirTemp("", "sky-coord-bench-rsync-")
	if err != nil {
		die(err)
	}
	defer os.RemoveAll(refDir)
	rsync := func(dst string) error {
		out, err := exec.CommandContext(ctx, "rsync", "-a", src+"/", dst+"/").CombinedOutput()
		if err != nil {
			return fmt.Errorf("rsync: %v: %s", err, out)
		}
		return nil
	}
	t0 := time.Now()
	if err := rsync(filepath.Join(refDir, "one")); err != nil {
		die(err)
	}
	one := time.Since(t0)
	t0 = time.Now()
	var wg sync.WaitGroup
	errs := make([]error, syncNodes)
	for i := range syncNodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = rsync(filepath.Join(refDir, fmt.Sprintf("n%d", i))) }()
	}
	wg.Wait()
	eight := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			die(err)
		}
	}

	// One changed file, then the re-sync; the rsync no-op beside it.
	if err := os.WriteFile(filepath.Join(src, "d0", "f0.bin"), []byte("changed for the re-sync\n"), 0o644); err != nil {
		die(err)
	}
	resync, err := timed("exec", "syncb", "sync.yaml")
	if err != nil {
		markFailed()
		fmt.Fprintf(&b, "**Failed**: %v\n\n", err)
		return b.String()
	}
	// The same job without a workdir: what exec costs without any sync.
	bare, err := timed("exec", "syncb", "up.yaml")
	if err != nil {
		die(err)
	}
	// Bring the copy up to date, then time a no-op.
	if err := rsync(filepath.Join(refDir, "one")); err != nil {
		die(err)
	}
	t0 = time.Now()
	if err := rsync(filepath.Join(refDir, "one")); err != nil {
		die(err)
	}
	noop := time.Since(t0)

	fmt.Fprintf(&b, "Tree: %d files, %.0f MB (5,000 files of 1–40 KB and 5 × 20 MB, last modified an hour before the run), on local disk; %d nodes on this machine. "+
		"sky-coord figures are `sky-coord exec CLUSTER task.yaml` wall times (upload, sync to every node, an `echo` run, job SUCCEEDED); "+
		"the same exec without a workdir took %s.\n\n", files, float64(treeBytes)/1e6, syncNodes, secs(bare))
	b.WriteString("| measure | sky-coord | reference (same run) | ratio | goal |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| first sync to %d nodes | %s | one `rsync -a`: %s | %.2f× | ≤ 1.5× |\n", syncNodes, secs(first), secs(one), first.Seconds()/one.Seconds())
	fmt.Fprintf(&b, "| first sync to %d nodes | %s | %d parallel `rsync -a`: %s | %.2f× | |\n", syncNodes, secs(first), syncNodes, secs(eight), first.Seconds()/eight.Seconds())
	fmt.Fprintf(&b, "| re-sync after one changed file | %s | `rsync -a` no-op: %s | %.2f× | ≤ 0.33× |\n", secs(resync), secs(noop), resync.Seconds()/noop.Seconds())
	fmt.Fprintf(&b, "| client egress (bytes the coordinator took in) | %.1f MB | the tree: %.1f MB | %.2f× | ≤ 1.25× |\n\n",
		float64(egress)/1e6, float64(treeBytes)/1e6, float64(egress)/float64(treeBytes))
	_ = e.cmd("down", "-y", "syncb").Run()
	return b.String()
}

// makeTree writes the benchmark tree: 5,000 files of 1–40 KB in 50
// directories and 5 files of 20 MB, random bytes.
func makeTree(root string) (int64, int, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	var total int64
	n := 0
	write := func(p string, size int) error {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		data := make([]byte, size)
		for i := 0; i < size; i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < size; j++ {
				data[i+j] = byte(v >> (8 * j))
			}
		}
		total += int64(size)
		n++
		return os.WriteFile(p, data, 0o644)
	}
	for i := 0; i < 5000; i++ {
		if err := write(filepath.Join(root, fmt.Sprintf("d%d", i%50), fmt.Sprintf("f%d.bin", i)), 1024+rng.IntN(39*1024)); err != nil {
			return 0, 0, err
		}
	}
	for i := 0; i < 5; i++ {
		if err := write(filepath.Join(root, "big", fmt.Sprintf("b%d.bin", i)), 20<<20); err != nil {
			return 0, 0, err
		}
	}
	// A tree at rest, as a checked-out repository is: files written a
	// moment ago would count as "racily clean" (git's rule, which the
	// client's stat cache follows) and be hashed again on every sync.
	old := time.Now().Add(-time.Hour)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	return total, n, err
}

func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
