package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
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
	changed, err := upperChanges(upper, 100)
	must(err)
	want := map[string]bool{
		"a": true, "a/below": true, // a file hides what the lower layer has below it
		"d": true, "d/x": true, "d/y": false, // a plain directory merges with the lower one
		"z": false, "z/y": false,
	}
	if root {
		want["o"], want["o/from-lower"] = true, true
		want["w"], want["w/x"] = true, true
	} else {
		t.Log("not root: opaque directories and whiteouts not tried (they take root to make; CI runs as root)")
	}
	for rel, w := range want {
		if got := changed(rel); got != w {
			t.Errorf("changed(%q) = %v, want %v", rel, got, w)
		}
	}
	if _, err := upperChanges(upper, 2); !errors.Is(err, errLayerTooBig) {
		t.Errorf("a layer over its limit: %v, want errLayerTooBig", err)
	}
}
