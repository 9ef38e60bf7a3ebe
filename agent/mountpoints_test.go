package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMountpointClaims: a mountpoint the registry created lives while any
// node claims it and is removed with the last claim; a stale claim (its
// node directory gone) does not keep it; content is never removed.
func TestMountpointClaims(t *testing.T) {
	base := t.TempDir()
	dst := filepath.Join(base, "made", "by", "us", "data")
	n1, n2 := t.TempDir(), filepath.Join(t.TempDir(), "node2")
	if err := os.Mkdir(n2, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{n1, n2} {
		if err := claimMountpoint(dst, false, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := releaseMountpoint(dst, n1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dst); err != nil {
		t.Fatalf("released by one of two nodes, the mountpoint is gone: %v", err)
	}
	if err := os.Remove(n2); err != nil { // node 2 torn down without releasing
		t.Fatal(err)
	}
	if err := claimMountpoint(dst, false, n1); err != nil {
		t.Fatal(err)
	}
	if err := releaseMountpoint(dst, n1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(base, "made")); !os.IsNotExist(err) {
		t.Errorf("after the last live claim, %s/made still exists (%v)", base, err)
	}

	// A file mountpoint with content written to it on the machine stays.
	fdst := filepath.Join(base, "f", "in.txt")
	if err := claimMountpoint(fdst, true, n1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fdst, []byte("someone's data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := releaseMountpoint(fdst, n1); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(fdst); err != nil || string(data) != "someone's data" {
		t.Errorf("release removed content: %q, %v", data, err)
	}
}
