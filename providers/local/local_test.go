package local

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sky-coord/sky-coord/providers"
	"github.com/sky-coord/sky-coord/providers/providertest"
)

func TestLaunchIsIdempotentWithDistinctAddresses(t *testing.T) {
	p := New(t.TempDir())
	ctx := context.Background()
	a, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range a {
		if a[i].IP != b[i].IP || a[i].ID != b[i].ID {
			t.Errorf("node %d: second launch gave %+v, first %+v", i, b[i], a[i])
		}
		if seen[a[i].IP] {
			t.Errorf("address %s given twice", a[i].IP)
		}
		seen[a[i].IP] = true
	}
	other, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "d", NumNodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if seen[other[0].IP] {
		t.Errorf("cluster d got address %s of cluster c", other[0].IP)
	}
	if err := p.Terminate(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if left, _ := p.Describe(ctx, "c"); len(left) != 0 {
		t.Errorf("after terminate: %d nodes left", len(left))
	}
	if _, err := os.Stat(p.clusterDir("c")); !os.IsNotExist(err) {
		t.Errorf("cluster directory still exists: %v", err)
	}
	if err := p.Terminate(ctx, "c"); err != nil {
		t.Errorf("second terminate: %v", err)
	}
}

func TestAbsoluteFileMounts(t *testing.T) {
	p := New(t.TempDir())
	req := providers.LaunchRequest{Cluster: "c", NumNodes: 2, FileMountDsts: []string{"~/ok", "rel", "/data"}}
	err := p.ValidateTask(req)
	if p.PrivateFileMounts() {
		if err != nil {
			t.Errorf("with private views (root), /data refused: %v", err)
		}
	} else if !errors.Is(err, providers.ErrInvalidRequest) || !strings.Contains(err.Error(), "needs root") {
		t.Errorf("without private views: err = %v, want ErrInvalidRequest saying it needs root", err)
	}
	if err := p.ValidateTask(providers.LaunchRequest{FileMountDsts: []string{"/"}}); !errors.Is(err, providers.ErrInvalidRequest) {
		t.Errorf("destination / accepted: %v", err)
	}
	if err := p.ValidateTask(providers.LaunchRequest{FileMountDsts: []string{"~/ok", "rel"}}); err != nil {
		t.Errorf("home and relative destinations refused: %v", err)
	}
}

// TestTwoHomesNeverShareAnAddress: providers of two SKY_COORD_HOMEs on one
// machine hand out distinct addresses even before any agent listens.
func TestTwoHomesNeverShareAnAddress(t *testing.T) {
	a, b := New(t.TempDir()), New(t.TempDir())
	ctx := context.Background()
	na, err := a.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	nb, err := b.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Terminate(ctx, "c"); _ = b.Terminate(ctx, "c") })
	seen := map[string]bool{}
	for _, in := range append(na, nb...) {
		if seen[in.IP] {
			t.Errorf("address %s handed out twice", in.IP)
		}
		seen[in.IP] = true
	}
}

func TestContract(t *testing.T) {
	providertest.Run(t, New(t.TempDir()))
}
