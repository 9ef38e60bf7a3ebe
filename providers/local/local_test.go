package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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

func TestSimulatedRegions(t *testing.T) {
	root := filepath.Join(t.TempDir(), "local")
	p := New(root)
	cfg := `regions:
  local-a:
    price: 1.0
    zones:
      local-a-1: {capacity: 0}
      local-a-2: {fail: quota}
  local-b:
    price: 2.0
    zones:
      local-b-1: {capacity: 3}
`
	if err := os.WriteFile(p.ConfigPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	offers, err := p.Offers()
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) != 3 || offers[0].Zone != "local-a-1" || offers[2].Price != 2 || !offers[0].Elastic {
		t.Fatalf("offers = %+v", offers)
	}
	ctx := context.Background()
	tests := []struct {
		zone, region string
		nodes        int
		want         error
	}{
		{"local-a-1", "local-a", 1, providers.ErrNoCapacity},
		{"local-a-2", "local-a", 1, providers.ErrQuota},
		{"local-b-1", "local-b", 4, providers.ErrNoCapacity},
		{"nowhere", "local-b", 1, providers.ErrInvalidRequest},
	}
	for _, tt := range tests {
		_, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: tt.nodes, Region: tt.region, Zone: tt.zone})
		if !errors.Is(err, tt.want) {
			t.Errorf("launch %d in %s: %v; want %v", tt.nodes, tt.zone, err, tt.want)
		}
	}
	insts, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 2, Region: "local-b", Zone: "local-b-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate(ctx, "c")
	if insts[0].Region != "local-b" || insts[0].Zone != "local-b-1" {
		t.Errorf("instance placed in %s/%s", insts[0].Region, insts[0].Zone)
	}
	// Two of three used: a second cluster of two does not fit, of one does.
	if _, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "d", NumNodes: 2, Region: "local-b", Zone: "local-b-1"}); !errors.Is(err, providers.ErrNoCapacity) {
		t.Errorf("over capacity: %v", err)
	}
	if _, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "d", NumNodes: 1, Region: "local-b", Zone: "local-b-1"}); err != nil {
		t.Errorf("within capacity: %v", err)
	}
	p.Terminate(ctx, "d")
	os.WriteFile(p.ConfigPath, []byte("regions:\n  r:\n    zones:\n      z: {fail: sometimes}\n"), 0o644)
	if _, err := p.Offers(); err == nil || !strings.Contains(err.Error(), `"sometimes" is not one of capacity, quota, credentials`) {
		t.Errorf("bad fail value: %v", err)
	}
}

func TestGPUName(t *testing.T) {
	for in, want := range map[string]string{
		"NVIDIA H200":             "H200",
		"NVIDIA A100-SXM4-80GB":   "A100-80GB",
		"NVIDIA A100-SXM4-40GB":   "A100",
		"Tesla V100-SXM2-16GB":    "V100",
		"Tesla T4":                "T4",
		"NVIDIA L4":               "L4",
		"NVIDIA GeForce RTX 4090": "RTX4090",
	} {
		if got := GPUName(in); got != want {
			t.Errorf("GPUName(%q) = %q, want %q", in, got, want)
		}
	}
}
