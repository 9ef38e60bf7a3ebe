package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
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
