package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/transfer"
)

// A node builds the manifest from the head's delta only when it last
// synced the delta's base there, and the delta leads to the manifest
// asked for; otherwise it fetches the manifest, keeping its record.
func TestFromDeltaOnlyFromTheSameBase(t *testing.T) {
	ctx := context.Background()
	a, err := New(api.AgentConfig{Token: "t", Home: t.TempDir(), Marker: "m", CoordinatorURL: "http://127.0.0.1:1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, dest := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "wd")
	// build makes src hold exactly files and uploads its tree.
	build := func(files map[string]string) (*transfer.Manifest, transfer.ChunkID) {
		t.Helper()
		if err := os.RemoveAll(src); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(src, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tree, err := transfer.BuildManifest(ctx, src, transfer.BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		id, _, err := transfer.Upload(ctx, &tree.Manifest, tree, a.chunks, transfer.UploadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return &tree.Manifest, id
	}
	m1, id1 := build(map[string]string{"f": "one", "g": "g"})
	plan, err := transfer.PlanApply(m1, dest, transfer.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Apply(ctx, a.chunks); err != nil {
		t.Fatal(err)
	}
	m2, id2 := build(map[string]string{"f": "two"})
	// From m3, which lacks g too, the delta to m2 does not remove g:
	// applied to m1 it would keep it.
	m3, id3 := build(map[string]string{"f": "three"})
	d12, d32, d13 := transfer.Diff(m1, id1, m2, id2), transfer.Diff(m3, id3, m2, id2), transfer.Diff(m1, id1, m3, id3)
	ref := api.BlobRef{Dest: "~/sky_workdir", Digest: id2.String()}
	req := api.NodeSyncRequest{Deltas: map[string][]byte{id2.String(): d12.Encode()}}

	if _, _, d := a.fromDelta(req, ref, id2, dest, nil); d != nil {
		t.Error("a node that synced nothing there used a delta")
	}
	a.setSynced(dest, id1, plan.Record(), false)
	m, last, d := a.fromDelta(req, ref, id2, dest, nil)
	if d == nil || last.rec != plan.Record() {
		t.Fatalf("delta from the base the node synced: used %v, record kept %v", d != nil, last.rec != nil)
	}
	if got, _ := m.ID(); got != id2 {
		t.Errorf("manifest built from the delta has id %s, want %s", got, id2)
	}
	for name, req := range map[string]api.NodeSyncRequest{
		"no delta":                          {},
		"a delta from another base":         {Deltas: map[string][]byte{id2.String(): d32.Encode()}},
		"a delta leading to another result": {Deltas: map[string][]byte{id2.String(): d13.Encode()}},
		"a damaged delta":                   {Deltas: map[string][]byte{id2.String(): []byte("SKYDELTA1\nshort")}},
	} {
		if _, last, d := a.fromDelta(req, ref, id2, dest, nil); d != nil || last.rec != plan.Record() {
			t.Errorf("%s: used %v, record kept %v; want the manifest fetched and the record kept", name, d != nil, last.rec != nil)
		}
	}
}

// The head takes the client's delta (BlobRef.Delta) when it leads from
// what the head synced there, and then neither fetches nor decodes the
// manifest; a delta from another base is passed over.
func TestDiffsTakeTheClientsDelta(t *testing.T) {
	ctx := context.Background()
	a, err := New(api.AgentConfig{Token: "t", Home: t.TempDir(), Marker: "m", CoordinatorURL: "http://127.0.0.1:1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "wd")
	manifest := func(files ...string) (*transfer.Manifest, transfer.ChunkID) {
		m := &transfer.Manifest{Version: transfer.ManifestVersion, Entries: []transfer.Entry{{Path: transfer.RootPath, Type: transfer.TypeDir, Mode: 0o755}}}
		for _, f := range files {
			m.Entries = append(m.Entries, transfer.Entry{Path: f, Type: transfer.TypeFile, Mode: 0o644})
		}
		data, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		id := transfer.HashChunk(data)
		if err := a.chunks.Put(ctx, id, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return m, id
	}
	m1, id1 := manifest("a")
	m2, id2 := manifest("a", "b")
	m3, id3 := manifest("c")
	plan, err := transfer.PlanApply(m1, dest, transfer.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Apply(ctx, a.chunks); err != nil {
		t.Fatal(err)
	}
	bases := map[string]syncedTree{dest: {id: id1, rec: plan.Record()}}
	for _, tc := range []struct {
		name    string
		delta   transfer.Delta
		fetched bool
	}{
		{"the client's delta from the head's base", transfer.Diff(m1, id1, m2, id2), false},
		{"a delta from another base", transfer.Diff(m3, id3, m2, id2), true},
		{"a delta that leads elsewhere", transfer.Diff(m1, id1, m3, id2), true},
	} {
		a.manifests = nil
		blob := api.BlobRef{Digest: id2.String(), Dest: dest, Delta: tc.delta.Encode()}
		got := a.diffs(ctx, []api.BlobRef{blob}, bases)
		hd, ok := got[id2.String()]
		if !ok || hd.d.Base != id1 || hd.d.Result != id2 || len(hd.d.Changed) != 1 { // b
			t.Errorf("%s: diff %+v, %v; want from %s to %s", tc.name, hd.d, ok, id1, id2)
		}
		if fetched := a.manifests[id2] != nil; fetched != tc.fetched {
			t.Errorf("%s: manifest fetched %v, want %v", tc.name, fetched, tc.fetched)
		}
	}
}
