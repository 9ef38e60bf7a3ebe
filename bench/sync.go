package main

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// syncBench measures the workdir sync (issue 6): a tree of about 200 MB
// (5,000 small files and a few 20 MB ones) synced to 8 local nodes by
// `exec`, beside one `rsync -a` of it and 8 parallel rsyncs in the same
// run; then a re-sync after one changed file beside an rsync no-op; and
// the bytes the client sent (what the coordinator's chunk store took in).
//
// Each trial has its own tree, cluster and rsync targets, and nothing is
// deleted until the end: on this machine's ext4, which runs without a
// journal, the inode allocator skips inodes deleted less than 60 s ago
// (RECENTCY_MIN in fs/ext4/ialloc.c; 360 s while their inode table block
// is dirty), so creating files soon after deleting many costs several
// times more, which alone moved one rsync between 0.4 s and 1.4 s. The
// section starts once the deletions of earlier ones are older than that.
// Dirty pages are flushed before every timed step, ours and the
// references alike.
type syncBench struct {
	bin string
}

const (
	syncNodes  = 8
	syncTrials = 5
)

// syncTrial is one trial's figures.
type syncTrial struct {
	first, firstUpload, firstNodes    time.Duration // exec wall; the client's upload; the nodes' sync (job log)
	resync, resyncUpload, resyncNodes time.Duration
	one, eight, noop                  time.Duration // references
	egress                            int64
}

func (sb *syncBench) run(ctx context.Context) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Workdir sync to %d local nodes\n\n", syncNodes)
	if _, err := exec.LookPath("rsync"); err != nil {
		b.WriteString("Not measured: rsync (the reference) is not installed; `make test-deps` installs it.\n\n")
		return b.String()
	}
	e := newEnv(sb.bin)
	if err := os.WriteFile(filepath.Join(e.dir, "up.yaml"), []byte(fmt.Sprintf("num_nodes: %d\nrun: echo up\n", syncNodes)), 0o644); err != nil {
		die(err)
	}
	refDir, err := os.MkdirTemp("", "sky-coord-bench-rsync-")
	if err != nil {
		die(err)
	}
	defer os.RemoveAll(refDir)
	// Let the deletions of earlier sections age out (see syncBench): the
	// flush makes their inode table blocks clean, so 60 s is the window.
	syscall.Sync()
	select {
	case <-ctx.Done():
	case <-time.After(65 * time.Second):
	}
	var trials []syncTrial
	var treeBytes int64
	var files int
	var bare time.Duration
	down := func(n int) { _ = e.cmd("down", "-y", fmt.Sprintf("syncb%d", n)).Run() }
	defer func() {
		for n := range syncTrials {
			down(n) // after a failure; a no-op for a cluster already down
		}
	}()
	for n := range syncTrials {
		stopIfDone(ctx)
		tr, tb, nf, bareExec, err := sb.trial(ctx, e, refDir, n)
		if err != nil {
			markFailed()
			fmt.Fprintf(&b, "**Failed** in trial %d: %v\n\n", n+1, err)
			return b.String()
		}
		trials = append(trials, tr)
		treeBytes, files, bare = tb, nf, bareExec
		// The next trial runs without this one's 8 idle agents beside it
		// (stopped: down would delete its files, see syncBench).
		_ = e.cmd("stop", fmt.Sprintf("syncb%d", n)).Run()
	}
	med := func(f func(syncTrial) time.Duration) time.Duration {
		d := make([]time.Duration, len(trials))
		for i, t := range trials {
			d[i] = f(t)
		}
		return median(d)
	}
	all := func(f func(syncTrial) time.Duration) string {
		d := make([]time.Duration, len(trials))
		for i, t := range trials {
			d[i] = f(t)
		}
		return list(d, secs)
	}
	// ratio is the median of each trial's ratio f/g: a trial's two
	// figures come from the same minutes of the machine, whose speed
	// drifts from trial to trial (its page cache fills, its filesystem
	// still frees inodes deleted minutes before), and a ratio of medians
	// can pair one trial's figure with another's.
	ratio := func(f, g func(syncTrial) time.Duration) float64 {
		r := make([]float64, len(trials))
		for i, t := range trials {
			r[i] = f(t).Seconds() / g(t).Seconds()
		}
		slices.Sort(r)
		if n := len(r); n%2 == 0 {
			return (r[n/2-1] + r[n/2]) / 2
		}
		return r[len(r)/2]
	}
	firstOf, oneOf, eightOf := func(t syncTrial) time.Duration { return t.first }, func(t syncTrial) time.Duration { return t.one }, func(t syncTrial) time.Duration { return t.eight }
	resyncWorkOf, noopOf := func(t syncTrial) time.Duration { return t.resyncUpload + t.resyncNodes }, func(t syncTrial) time.Duration { return t.noop }
	first, one, eight := med(func(t syncTrial) time.Duration { return t.first }), med(func(t syncTrial) time.Duration { return t.one }), med(func(t syncTrial) time.Duration { return t.eight })
	resync, noop := med(func(t syncTrial) time.Duration { return t.resync }), med(func(t syncTrial) time.Duration { return t.noop })
	resyncWork := med(func(t syncTrial) time.Duration { return t.resyncUpload + t.resyncNodes })
	resyncHead := med(func(t syncTrial) time.Duration { return t.resyncUpload })

	fmt.Fprintf(&b, "Tree: %d files, %.0f MB (5,000 files of 1–40 KB and 5 × 20 MB, last modified an hour before the run), on local disk; %d nodes on this machine, %s. "+
		"%d trials, each with a tree, cluster and rsync targets of its own (a trial's cluster is stopped before the next starts); medians, with every trial's figure after them; a ratio is the median of the trials' own ratios (each trial's two figures come from the same minutes of the machine, whose speed drifts from trial to trial). "+
		"sky-coord's first figure is the wall time of `sky-coord exec CLUSTER task.yaml` (upload, sync to every node, an `echo` run, job SUCCEEDED; the same exec without a workdir took %s); "+
		"*upload* is what exec reports for scanning the tree and giving the coordinator what it lacks (the CLI runs on the coordinator's machine, so on a first sync it writes into the coordinator's chunk store as it hashes; a re-sync is made by the file watcher daemon, which the launch started: it describes again only what changed since the description it holds in memory, sends that and the manifest to the coordinator over HTTP, and the manifest delta goes with the job), *nodes* what the job log reports for bringing every node's copy into place.\n\n",
		files, float64(treeBytes)/1e6, syncNodes, sharing(), syncTrials, secs(bare))
	b.WriteString("| measure | sky-coord | reference (same run) | ratio | goal |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| first sync to %d nodes (exec wall) | %s (%s) | one `rsync -a`: %s (%s) | %.2f× | ≤ 1.5× |\n", syncNodes, secs(first), all(func(t syncTrial) time.Duration { return t.first }), secs(one), all(oneOf), ratio(firstOf, oneOf))
	fmt.Fprintf(&b, "| first sync to %d nodes (exec wall) | %s | %d parallel `rsync -a`: %s (%s) | %.2f× | |\n", syncNodes, secs(first), syncNodes, secs(eight), all(eightOf), ratio(firstOf, eightOf))
	fmt.Fprintf(&b, "| – of which upload / nodes | %s / %s | | | |\n", secs(med(func(t syncTrial) time.Duration { return t.firstUpload })), secs(med(func(t syncTrial) time.Duration { return t.firstNodes })))
	fmt.Fprintf(&b, "| re-sync after one changed file: upload + nodes | %s (%s) | `rsync -a` no-op: %s (%s) | %.2f× | ≤ 0.33× |\n", secs(resyncWork), all(func(t syncTrial) time.Duration { return t.resyncUpload + t.resyncNodes }), secs(noop), all(noopOf), ratio(resyncWorkOf, noopOf))
	fmt.Fprintf(&b, "| – of which upload (the client's scan and send) | %s | `rsync -a` no-op: %s | %.2f× | |\n", secs(resyncHead), secs(noop), ratio(func(t syncTrial) time.Duration { return t.resyncUpload }, noopOf))
	fmt.Fprintf(&b, "| re-sync after one changed file (exec wall) | %s | | | |\n", secs(resync))
	var per []string
	for i, t := range trials {
		per = append(per, fmt.Sprintf("trial %d: first %s (upload %s, nodes %s; %.2f× its rsync), re-sync upload %s, nodes %s (%.2f× its no-op)",
			i+1, secs(t.first), secs(t.firstUpload), secs(t.firstNodes), firstOf(t).Seconds()/oneOf(t).Seconds(),
			secs(t.resyncUpload), secs(t.resyncNodes), resyncWorkOf(t).Seconds()/noopOf(t).Seconds()))
	}
	egress := trials[0].egress
	fmt.Fprintf(&b, "| client egress (bytes the coordinator took in, trial 1) | %.1f MB | the tree: %.1f MB | %.2f× | ≤ 1.25× |\n\n",
		float64(egress)/1e6, float64(treeBytes)/1e6, float64(egress)/float64(treeBytes))
	fmt.Fprintf(&b, "Each trial — %s.\n\n", strings.Join(per, "; "))
	return b.String()
}

// sharing says what local nodes share on this machine.
func sharing() string {
	if os.Geteuid() == 0 {
		return "sharing the coordinator's chunk store and one copy of the tree, which each node sees through a copy-on-write (overlayfs) view of its own"
	}
	return "sharing the coordinator's chunk store, each writing its own copy of the tree (one copy shared through copy-on-write views takes root)"
}

// trial runs one trial: tree n, cluster syncb<n>, rsync targets under
// refDir/<n>. It returns the figures, the tree's size and file count, and
// the wall time of an exec without a workdir.
func (sb *syncBench) trial(ctx context.Context, e *env, refDir string, n int) (syncTrial, int64, int, time.Duration, error) {
	var tr syncTrial
	code := fmt.Sprintf("code%d", n)
	src := filepath.Join(e.dir, code)
	treeBytes, files, err := makeTree(src, uint64(n))
	if err != nil {
		return tr, 0, 0, 0, fmt.Errorf("make the tree: %w", err)
	}
	task := filepath.Join(e.dir, fmt.Sprintf("sync%d.yaml", n))
	if err := os.WriteFile(task, []byte(fmt.Sprintf("num_nodes: %d\nworkdir: ./%s\nrun: echo synced\n", syncNodes, code)), 0o644); err != nil {
		return tr, 0, 0, 0, err
	}
	cluster := fmt.Sprintf("syncb%d", n)
	if out, err := e.cmd("launch", "-y", "-c", cluster, "up.yaml").CombinedOutput(); err != nil {
		return tr, 0, 0, 0, fmt.Errorf("launch: %v\n%s", err, out)
	}
	chunks := filepath.Join(e.home, "server", "chunks")
	before := dirBytes(chunks)
	// execSync runs the exec and reads, from what it prints, the upload's
	// time and the nodes' sync time.
	execSync := func() (wall, upload, nodes time.Duration, err error) {
		syscall.Sync()
		start := time.Now()
		out, err := e.cmd("exec", cluster, task).CombinedOutput()
		wall = time.Since(start)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("sky-coord exec: %v\n%s", err, out)
		}
		if upload, err = durationAfter(string(out), "Uploaded workdir:", " new in "); err != nil {
			return 0, 0, 0, fmt.Errorf("%v in:\n%s", err, out)
		}
		if nodes, err = durationAfter(string(out), "sky-coord: synced ~/sky_workdir to", " in "); err != nil {
			return 0, 0, 0, fmt.Errorf("%v in:\n%s", err, out)
		}
		return wall, upload, nodes, nil
	}
	if tr.first, tr.firstUpload, tr.firstNodes, err = execSync(); err != nil {
		return tr, 0, 0, 0, err
	}
	tr.egress = dirBytes(chunks) - before

	// References, same tree, same machine, same trial.
	rsync := func(dst string) error {
		out, err := exec.CommandContext(ctx, "rsync", "-a", src+"/", dst+"/").CombinedOutput()
		if err != nil {
			return fmt.Errorf("rsync: %v: %s", err, out)
		}
		return nil
	}
	base := filepath.Join(refDir, fmt.Sprint(n))
	if err := os.Mkdir(base, 0o755); err != nil {
		return tr, 0, 0, 0, err
	}
	syscall.Sync()
	t0 := time.Now()
	if err := rsync(filepath.Join(base, "one")); err != nil {
		return tr, 0, 0, 0, err
	}
	tr.one = time.Since(t0)
	syscall.Sync()
	t0 = time.Now()
	var wg sync.WaitGroup
	errs := make([]error, syncNodes)
	for i := range syncNodes {
		wg.Go(func() { errs[i] = rsync(filepath.Join(base, fmt.Sprintf("n%d", i))) })
	}
	wg.Wait()
	tr.eight = time.Since(t0)
	for _, err := range errs {
		if err != nil {
			return tr, 0, 0, 0, err
		}
	}

	// One changed file, then the re-sync; the rsync no-op beside it.
	if err := os.WriteFile(filepath.Join(src, "d0", "f0.bin"), []byte("changed for the re-sync\n"), 0o644); err != nil {
		return tr, 0, 0, 0, err
	}
	if tr.resync, tr.resyncUpload, tr.resyncNodes, err = execSync(); err != nil {
		return tr, 0, 0, 0, err
	}
	// The same job without a workdir: what exec costs without any sync.
	t0 = time.Now()
	if out, err := e.cmd("exec", cluster, "up.yaml").CombinedOutput(); err != nil {
		return tr, 0, 0, 0, fmt.Errorf("exec: %v\n%s", err, out)
	}
	bare := time.Since(t0)
	// Bring the copy up to date, then time a no-op.
	if err := rsync(filepath.Join(base, "one")); err != nil {
		return tr, 0, 0, 0, err
	}
	syscall.Sync()
	t0 = time.Now()
	if err := rsync(filepath.Join(base, "one")); err != nil {
		return tr, 0, 0, 0, err
	}
	tr.noop = time.Since(t0)
	return tr, treeBytes, files, bare, nil
}

// durationAfter finds the line holding marker in out and parses the Go
// duration after sep on it, up to a space or a final period.
func durationAfter(out, marker, sep string) (time.Duration, error) {
	for _, line := range strings.Split(out, "\n") {
		i := strings.Index(line, marker)
		if i < 0 {
			continue
		}
		rest := line[i:]
		j := strings.LastIndex(rest, sep)
		if j < 0 {
			break
		}
		f := strings.Fields(rest[j+len(sep):])
		if len(f) == 0 {
			break
		}
		return time.ParseDuration(strings.TrimSuffix(f[0], "."))
	}
	return 0, fmt.Errorf("no %q line with a duration", marker)
}

// makeTree writes the benchmark tree: 5,000 files of 1–40 KB in 50
// directories and 5 files of 20 MB, random bytes.
func makeTree(root string, seed uint64) (int64, int, error) {
	rng := rand.New(rand.NewPCG(1, 2+seed))
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
