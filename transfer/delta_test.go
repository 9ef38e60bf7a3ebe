package transfer

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
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

// Delta.Apply checks only what the delta touches; on random deltas over
// a valid base, many of them invalid, it must refuse exactly those whose
// result Manifest.Validate refuses.
func TestDeltaValidatesAsAWholeManifestWould(t *testing.T) {
	t.Parallel()
	names := []string{"a", "b", "a-b", "a.b", "c"}
	randPath := func(rng *rand.Rand) string {
		p := names[rng.IntN(len(names))]
		for rng.IntN(3) == 0 {
			p += "/" + names[rng.IntN(len(names))]
		}
		switch rng.IntN(40) {
		case 0:
			return RootPath
		case 1:
			return p + "/"
		case 2:
			return p + "/.."
		}
		return p
	}
	randEntry := func(rng *rand.Rand, p string, valid bool) Entry {
		e := Entry{Path: p, Mode: 0o644}
		switch rng.IntN(6) {
		case 0, 1:
			e.Type, e.Mode = TypeDir, 0o755
		case 2:
			e.Type, e.Mode, e.Target = TypeSymlink, 0, "t"
		default:
			e.Type, e.Size = TypeFile, 3
			e.Chunks = []ChunkRef{{Size: 3}}
		}
		if !valid && rng.IntN(30) == 0 {
			e.Size++ // chunks no longer sum to it (or a dir with a size)
		}
		return e
	}
	refused := 0
	for seed := range uint64(3000) {
		rng := rand.New(rand.NewPCG(seed, 7))
		// A valid base: random paths, each with its parents as directories.
		byPath := map[string]Entry{RootPath: {Path: RootPath, Type: TypeDir, Mode: 0o755}}
		for range rng.IntN(12) {
			p := randPath(rng)
			if checkPath(p) != nil {
				continue
			}
			for q := parentPath(p); q != RootPath; q = parentPath(q) {
				byPath[q] = Entry{Path: q, Type: TypeDir, Mode: 0o755}
			}
			if _, ok := byPath[p]; !ok {
				byPath[p] = randEntry(rng, p, true)
			}
		}
		// Leaves only may be files or links.
		base := sortedEntries(byPath)
		for i := range base {
			if lo, hi := below(base, base[i].Path); lo < hi && base[i].Type != TypeDir {
				base[i] = Entry{Path: base[i].Path, Type: TypeDir, Mode: 0o755}
			}
		}
		mustNo(t, (&Manifest{Version: ManifestVersion, Entries: base}).Validate())
		var d Delta
		removed := map[string]bool{}
		for range rng.IntN(4) {
			if rng.IntN(2) == 0 {
				removed[base[rng.IntN(len(base))].Path] = true
			} else {
				removed[randPath(rng)] = true
			}
		}
		for p := range removed {
			d.Removed = append(d.Removed, p)
		}
		slices.SortFunc(d.Removed, comparePaths)
		changed := map[string]Entry{}
		for range rng.IntN(4) {
			p := randPath(rng)
			if rng.IntN(3) == 0 {
				p = base[rng.IntN(len(base))].Path
			}
			changed[p] = randEntry(rng, p, false)
		}
		d.Changed = sortedEntries(changed)
		got, err := d.Apply(base)
		merged, _ := mergeEntries(base, nil, d.Removed, d.Changed, nil)
		whole := (&Manifest{Version: ManifestVersion, Entries: merged}).Validate()
		if (err == nil) != (whole == nil) {
			t.Fatalf("seed %d: removed %q, changed %v: Apply gave %v, Validate of the result %v", seed, d.Removed, d.Changed, err, whole)
		}
		if err != nil {
			refused++
			continue
		}
		if diff := cmp.Diff(merged, got.Entries); diff != "" {
			t.Fatalf("seed %d: Apply's result differs from the merge (-want +got):\n%s", seed, diff)
		}
	}
	if refused < 300 || refused > 2700 {
		t.Fatalf("%d of 3000 random deltas refused: the test no longer tries both kinds", refused)
	}
}

// sortedEntries returns the map's entries in path order.
func sortedEntries(byPath map[string]Entry) []Entry {
	out := make([]Entry, 0, len(byPath))
	for _, e := range byPath {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return comparePaths(a.Path, b.Path) })
	return out
}
