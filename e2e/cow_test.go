package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/procscan"
	"github.com/sky-coord/sky-coord/testenv"
)

// TestLocalNodesShareOneCopyOfTheWorkdir: as root, the 4 local nodes of a
// cluster see the workdir through copy-on-write views of one copy on the
// machine. A job's change on one node is that node's alone (the shared
// copy and the other nodes keep the source's bytes); a re-sync brings
// the source's version back and keeps what the job created; a view lost
// with a restart of the machine is mounted again; down leaves no mount
// and no directory.
func TestLocalNodesShareOneCopyOfTheWorkdir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("copy-on-write views of the shared workdir are overlayfs mounts, which take root (CI runs as root); without root each node writes its own copy, which TestWorkdirSyncMatchesEveryRank covers")
	}
	cli := testenv.NewCLI(t)
	src := filepath.Join(cli.Dir, "code")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(rel, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(src, rel), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("shared.txt", "from the source\n")
	write("sub/other.txt", "version 1\n")
	write("gone.txt", "leaves the source before the re-sync\n")
	cli.WriteFile("sync.yaml", "num_nodes: 4\nworkdir: ./code\nrun: cat shared.txt sub/other.txt\n")
	cli.WriteFile("edit.yaml", "num_nodes: 4\nrun: |\n  if [ \"$SKYPILOT_NODE_RANK\" = 1 ]; then echo edited >> ~/sky_workdir/shared.txt; echo by the job > ~/sky_workdir/job.txt; fi\n")
	if res := cli.Run("launch", "-y", "-c", "cow", "sync.yaml"); res.Code != 0 || strings.Count(res.Stdout, "from the source") != 4 {
		t.Fatalf("launch: exit %d", res.Code)
	}
	cluster := filepath.Join(cli.Home, "local", "clusters", "cow")
	workdir := func(rank int) string {
		return filepath.Join(cluster, "node-"+string(rune('0'+rank)), "home", "sky_workdir")
	}
	points, err := procscan.MountPoints()
	if err != nil {
		t.Fatal(err)
	}
	for r := range 4 {
		if !slices.Contains(points, workdir(r)) {
			t.Errorf("rank %d: %s is not a mount point; want a copy-on-write view", r, workdir(r))
		}
	}
	trees, _ := filepath.Glob(filepath.Join(cluster, "trees", "*", "shared.txt"))
	if len(trees) != 1 {
		t.Fatalf("shared copies of the workdir: %v, want one", trees)
	}

	if res := cli.Run("exec", "cow", "edit.yaml"); res.Code != 0 {
		t.Fatalf("edit: exit %d", res.Code)
	}
	read := func(p string) string {
		data, _ := os.ReadFile(p)
		return string(data)
	}
	for r := range 4 {
		want := "from the source\n"
		if r == 1 {
			want += "edited\n"
		}
		if got := read(filepath.Join(workdir(r), "shared.txt")); got != want {
			t.Errorf("rank %d: shared.txt = %q, want %q", r, got, want)
		}
	}
	if got := read(trees[0]); got != "from the source\n" {
		t.Errorf("the shared copy changed with a node's: %q", got)
	}

	write("sub/other.txt", "version 2\n")
	if err := os.Remove(filepath.Join(src, "gone.txt")); err != nil {
		t.Fatal(err)
	}
	res := cli.Run("exec", "cow", "sync.yaml")
	if res.Code != 0 || strings.Count(res.Stdout, "version 2") != 4 || strings.Count(res.Stdout, "edited") != 0 {
		t.Fatalf("re-sync: exit %d; want version 2 and the source's shared.txt on every rank", res.Code)
	}
	if got := read(filepath.Join(workdir(1), "job.txt")); got != "by the job\n" {
		t.Errorf("the job's file after the re-sync: %q", got)
	}
	for r := range 4 { // sky-coord's own file, unchanged on the node: removed like any synced file
		if _, err := os.Stat(filepath.Join(workdir(r), "gone.txt")); !os.IsNotExist(err) {
			t.Errorf("rank %d: gone.txt left the source but is still there (%v)", r, err)
		}
	}

	// The machine restarted (the view is gone): the node's agent mounts
	// it again when the cluster starts, with the job's file in it.
	if res := cli.Run("stop", "-y", "cow"); res.Code != 0 {
		t.Fatalf("stop: exit %d", res.Code)
	}
	if err := syscall.Unmount(workdir(1), 0); err != nil {
		t.Fatal(err)
	}
	if res := cli.Run("start", "-y", "cow"); res.Code != 0 {
		t.Fatalf("start: exit %d", res.Code)
	}
	testenv.Eventually(t, 10*time.Second, "rank 1's view mounted again", func() bool {
		return read(filepath.Join(workdir(1), "job.txt")) == "by the job\n"
	})

	if res := cli.Run("down", "-y", "cow"); res.Code != 0 {
		t.Fatalf("down: exit %d", res.Code)
	}
	points, _ = procscan.MountPoints()
	for _, p := range points {
		if strings.HasPrefix(p, cluster) {
			t.Errorf("down left %s mounted", p)
		}
	}
	if _, err := os.Stat(cluster); !os.IsNotExist(err) {
		t.Errorf("down left %s (%v)", cluster, err)
	}
}

// TestCopyOnWriteViewResyncPutsBackWhatTheJobChanged: a re-sync of a view
// looks only at what the node's own layer holds, so every way a job can
// change a view must land there and be put back: a deleted file of the
// shared copy (a whiteout), a deleted file an earlier re-sync added (gone
// from the node's layer without a trace), a directory deleted and made
// again (opaque), one renamed (redirected, or copied where the kernel
// lacks redirect_dir), and a changed mode.
func TestCopyOnWriteViewResyncPutsBackWhatTheJobChanged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("copy-on-write views of the shared workdir are overlayfs mounts, which take root (CI runs as root)")
	}
	cli := testenv.NewCLI(t)
	src := filepath.Join(cli.Dir, "code")
	write := func(rel, data string) {
		t.Helper()
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, rel := range []string{"a.txt", "dir1/x.txt", "dir2/y.txt", "dir3/z.txt"} {
		write(rel, rel+"\n")
	}
	check := "num_nodes: 2\nworkdir: ./code\nrun: cat a.txt added.txt dir1/x.txt dir2/y.txt && stat -c 'mode %a' dir3/z.txt && ls dir1 moved 2>&1\n"
	cli.WriteFile("first.yaml", "num_nodes: 2\nworkdir: ./code\nrun: echo synced\n")
	cli.WriteFile("check.yaml", check)
	cli.WriteFile("change.yaml", "num_nodes: 2\nrun: |\n  cd ~/sky_workdir && rm a.txt added.txt && rm -r dir1 && mkdir dir1 && echo job > dir1/new.txt && mv dir2 moved && chmod 600 dir3/z.txt\n")
	if res := cli.Run("launch", "-y", "-c", "view", "first.yaml"); res.Code != 0 {
		t.Fatalf("launch: exit %d", res.Code)
	}
	write("added.txt", "added.txt\n") // on the nodes, in their own layers only
	if res := cli.Run("exec", "view", "first.yaml"); res.Code != 0 {
		t.Fatalf("re-sync with added.txt: exit %d", res.Code)
	}
	if res := cli.Run("exec", "view", "change.yaml"); res.Code != 0 {
		t.Fatalf("the job's changes: exit %d\n%s", res.Code, res.Stdout)
	}
	res := cli.Run("exec", "view", "check.yaml")
	if res.Code != 0 {
		t.Fatalf("re-sync after the job's changes: exit %d\n%s", res.Code, res.Stdout)
	}
	for _, want := range []string{"a.txt", "added.txt", "dir1/x.txt", "dir2/y.txt", "mode 644", "new.txt", "y.txt"} {
		if n := strings.Count(res.Stdout, want); n < 2 {
			t.Errorf("%q on %d of 2 ranks after the re-sync:\n%s", want, n, res.Stdout)
		}
	}
	if res := cli.Run("down", "-y", "view"); res.Code != 0 {
		t.Fatalf("down: exit %d", res.Code)
	}
}
