package transfer

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A delta between manifests of random trees, encoded and decoded, leads
// from the first to exactly the second (same entries, same id).
func TestDeltaLeadsToTheNextManifest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for seed := range uint64(6) {
		src := filepath.Join(t.TempDir(), "src")
		mustNo(t, os.Mkdir(src, 0o755))
		g := &treeGen{rng: rand.New(rand.NewPCG(seed, 11)), dir: src}
		g.fill(t, ".", 0)
		g.finish(t)
		prev, err := BuildManifest(ctx, src, BuildOptions{})
		mustNo(t, err)
		for round := range 4 {
			g.mutate(t, 1+int(seed)*3)
			g.finish(t)
			next, err := BuildManifest(ctx, src, BuildOptions{})
			mustNo(t, err)
			prevID, err := prev.Manifest.ID()
			mustNo(t, err)
			nextID, err := next.Manifest.ID()
			mustNo(t, err)
			d := Diff(&prev.Manifest, prevID, &next.Manifest, nextID)
			decoded, err := DecodeDelta(d.Encode())
			if err != nil {
				t.Fatalf("seed %d round %d: decode: %v", seed, round, err)
			}
			if decoded.Base != prevID || decoded.Result != nextID {
				t.Fatalf("seed %d round %d: delta's ids did not survive encoding", seed, round)
			}
			got, err := decoded.Apply(prev.Manifest.Entries)
			if err != nil {
				t.Fatalf("seed %d round %d: apply: %v", seed, round, err)
			}
			if diff := cmp.Diff(next.Manifest, got); diff != "" {
				t.Fatalf("seed %d round %d: delta led elsewhere (-want +got):\n%s", seed, round, diff)
			}
			if id, _ := got.ID(); id != nextID {
				t.Fatalf("seed %d round %d: result's id %s, want %s", seed, round, id, nextID)
			}
			prev = next
		}
	}
}

// The delta of a one-file change names that file and nothing else.
func TestDeltaOfOneChangedFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := t.TempDir()
	for _, name := range []string{"a", "b", "c"} {
		mustNo(t, osWriteFile(src, name, name))
	}
	old := time.Now().Add(-time.Hour)
	for _, name := range []string{".", "a", "b", "c"} {
		mustNo(t, os.Chtimes(filepath.Join(src, name), old, old))
	}
	prev, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	mustNo(t, osWriteFile(src, "b", "changed"))
	mustNo(t, os.Chtimes(filepath.Join(src, "b"), old, old))
	mustNo(t, os.Chtimes(src, old, old))
	next, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(t, err)
	d := Diff(&prev.Manifest, ChunkID{}, &next.Manifest, ChunkID{})
	if len(d.Removed) != 0 || len(d.Changed) != 1 || d.Changed[0].Path != "b" {
		t.Fatalf("delta removes %q and changes %d entries, want only b changed", d.Removed, len(d.Changed))
	}
}

// A delta that would leave a manifest Validate refuses is refused, as is
// one whose lists are out of order or whose encoding is cut short.
func TestDeltaRefusesBadResults(t *testing.T) {
	t.Parallel()
	base := []Entry{
		{Path: RootPath, Type: TypeDir, Mode: 0o755},
		{Path: "d", Type: TypeDir, Mode: 0o755},
		{Path: "d/f", Type: TypeFile, Mode: 0o644},
		{Path: "g", Type: TypeFile, Mode: 0o644},
	}
	for name, d := range map[string]Delta{
		"a directory removed, its file kept": {Removed: []string{"d"}},
		"removed paths out of order":         {Removed: []string{"g", "d/f"}},
		"changed entries out of order": {Changed: []Entry{
			{Path: "z", Type: TypeFile, Mode: 0o644}, {Path: "a", Type: TypeFile, Mode: 0o644}}},
		"an entry below a file": {Changed: []Entry{{Path: "g/x", Type: TypeFile, Mode: 0o644}}},
	} {
		if _, err := d.Apply(base); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: Apply gave %v, want ErrBadManifest", name, err)
		}
	}
	good := Delta{Changed: []Entry{{Path: "h", Type: TypeFile, Mode: 0o644}}}
	enc := good.Encode()
	if _, err := DecodeDelta(enc[:len(enc)-2]); !errors.Is(err, ErrBadManifest) {
		t.Errorf("a delta cut short decoded: %v", err)
	}
	if _, err := DecodeDelta(append(enc, 0)); !errors.Is(err, ErrBadManifest) {
		t.Errorf("a delta with trailing bytes decoded: %v", err)
	}
}
