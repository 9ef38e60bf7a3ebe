package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/transfer"
)

// TestUpperChanges: which paths of a view its upper layer may change.
// Opaque directories and whiteouts take root to make; the rest runs
// anywhere.
func TestUpperChanges(t *testing.T) {
	upper := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(upper, "a"), nil, 0o644))
	must(os.MkdirAll(filepath.Join(upper, "d"), 0o755))
	must(os.WriteFile(filepath.Join(upper, "d", "x"), nil, 0o644))
	root := os.Geteuid() == 0
	if root {
		must(os.Mkdir(filepath.Join(upper, "o"), 0o755))
		must(unix.Lsetxattr(filepath.Join(upper, "o"), "trusted.overlay.opaque", []byte("y"), 0))
		must(unix.Mknod(filepath.Join(upper, "w"), unix.S_IFCHR, 0))
	}
	held, hiding, err := upperChanges(upper, 100)
	must(err)
	// A plain directory (d) merges with the lower one; a file (a),
	// whiteout (w) or opaque directory (o) hides what is below it.
	wantHeld, wantHiding := []string{"a", "d", "d/x"}, []string{"a", "d/x"}
	if root {
		wantHeld, wantHiding = []string{"a", "d", "d/x", "o", "w"}, []string{"a", "d/x", "o", "w"}
	} else {
		t.Log("not root: opaque directories and whiteouts not tried (they take root to make; CI runs as root)")
	}
	slices.Sort(held)
	slices.Sort(hiding)
	if !slices.Equal(held, wantHeld) || !slices.Equal(hiding, wantHiding) {
		t.Errorf("upper layer holds %q and hides below %q; want %q and %q", held, hiding, wantHeld, wantHiding)
	}
	if _, _, err := upperChanges(upper, 2); !errors.Is(err, errLayerTooBig) {
		t.Errorf("a layer over its limit: %v, want errLayerTooBig", err)
	}
}

// Nodes of one machine, each with a store of its own, sync a new tree as
// views of the machine's copy: the node that writes the copy (the head,
// the others' origin) holds the tree's chunks, and the others, which only
// mount it, fetch none.
func TestSeededNodesFetchOnlyToWriteTheCopy(t *testing.T) {
	if !canMountOverlay() {
		t.Skip("mounting an overlay view takes root; this runs as root in CI")
	}
	shared := t.TempDir()
	c := newClusterWith(t, 3, func(cfg *api.AgentConfig) { cfg.TreeDir = shared })
	t.Cleanup(func() {
		for _, ta := range c.agents {
			_ = syscall.Unmount(ta.home("sky_workdir"), syscall.MNT_DETACH) // what the test mounted; the check below says if it was
		}
	})
	src := t.TempDir()
	content := strings.Repeat("the tree's one file\n", 100)
	if err := os.WriteFile(filepath.Join(src, "f.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	j := c.job(1, "", "cat f.txt")
	j.Blobs = []api.BlobRef{{Digest: c.coord.addTree(t, src), Dest: "~/sky_workdir"}}
	c.submit(j)
	if evs := c.waitEnd(1); evs[len(evs)-1].Status != api.JobSucceeded {
		t.Fatalf("job 1: %+v", evs)
	}
	chunk := transfer.HashChunk([]byte(content))
	for i, ta := range c.agents {
		if !isMountPoint(ta.home("sky_workdir")) {
			t.Errorf("node %d: ~/sky_workdir is no view of the machine's copy", i)
		}
		logName := map[int]string{0: "0-head.log", 1: "1-worker1.log", 2: "2-worker2.log"}[i]
		if got := ta.readLog(t, "sky_logs/1-test/tasks/"+logName); got != content {
			t.Errorf("node %d read %q, want the tree's file", i, got)
		}
		missing, err := ta.a.chunks.Missing(context.Background(), []transfer.ChunkID{chunk})
		if err != nil {
			t.Fatal(err)
		}
		if holds, want := len(missing) == 0, i == 0; holds != want {
			t.Errorf("node %d holds the file's chunk: %v, want %v (only the node that wrote the copy needs it)", i, holds, want)
		}
	}
}
