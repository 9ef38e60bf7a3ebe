package transfer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func validManifest() Manifest {
	a := HashChunk([]byte("a"))
	return Manifest{Version: ManifestVersion, Entries: []Entry{
		{Path: RootPath, Type: TypeDir, Mode: 0o755, MTime: 1},
		{Path: "a b", Type: TypeFile, Mode: 0o644, MTime: 2, Size: 1, Chunks: []ChunkRef{{ID: a, Size: 1}}},
		{Path: "dir", Type: TypeDir, Mode: 0o2775, MTime: 3},
		{Path: "dir-x", Type: TypeDir, Mode: 0o1777}, // '-' sorts before '/'
		{Path: "dir/empty", Type: TypeFile, Mode: 0o4755, MTime: -4},
		{Path: "dir/link", Type: TypeSymlink, Target: "../a b"},
		{Path: "ünï", Type: TypeFile, Mode: 0o600, Size: 2, Chunks: []ChunkRef{{ID: a, Size: 1}, {ID: a, Size: 1}}},
	}}
}

func TestManifestEncodeDecode(t *testing.T) {
	t.Parallel()
	m := validManifest()
	data, err := m.Encode()
	mustNo(t, err)
	got, err := DecodeManifest(data)
	mustNo(t, err)
	if diff := cmp.Diff(m, got); diff != "" {
		t.Fatalf("decoded manifest (-want +got):\n%s", diff)
	}
	id1, _ := m.ID()
	id2, _ := got.ID()
	if id1 != id2 || id1 != HashChunk(data) {
		t.Fatal("manifest id is not stable or not the hash of its encoding")
	}
	if len(m.Chunks()) != 1 {
		t.Fatalf("Chunks() = %d, want 1 distinct", len(m.Chunks()))
	}
}

// The id of a manifest whose encoding spans many of the pieces ID hashes
// at a time is still the hash of the whole encoding.
func TestManifestIDHashesTheWholeEncoding(t *testing.T) {
	t.Parallel()
	m := Manifest{Version: ManifestVersion, Entries: []Entry{{Path: RootPath, Type: TypeDir, Mode: 0o755}}}
	long := strings.Repeat("x", 3000) // an entry larger than what is left of a piece
	for d := range 20 {
		dir := fmt.Sprintf("d%02d", d)
		m.Entries = append(m.Entries, Entry{Path: dir, Type: TypeDir, Mode: 0o755, MTime: int64(d)})
		for f := range 150 {
			id := HashChunk([]byte(fmt.Sprint(d, f)))
			m.Entries = append(m.Entries, Entry{Path: fmt.Sprintf("%s/f%03d", dir, f), Type: TypeFile, Mode: 0o644,
				MTime: int64(f) << 40, Size: 7, Chunks: []ChunkRef{{ID: id, Size: 3}, {ID: id, Size: 4}}})
		}
		m.Entries = append(m.Entries, Entry{Path: dir + "/l" + long, Type: TypeSymlink, Target: long})
	}
	data, err := m.Encode()
	mustNo(t, err)
	if len(data) < 5*hashPiece {
		t.Fatalf("the encoding is %d bytes; the test wants several pieces of %d", len(data), hashPiece)
	}
	id, err := m.ID()
	mustNo(t, err)
	if id != HashChunk(data) {
		t.Fatalf("ID() = %s, the hash of the encoding is %s", id, HashChunk(data))
	}
}

func TestManifestValidateRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(m *Manifest)
		want   string
	}{
		{"version", func(m *Manifest) { m.Version = 2 }, "version"},
		{"no root", func(m *Manifest) { m.Entries = m.Entries[1:] }, "root"},
		{"unsorted", func(m *Manifest) { m.Entries[1], m.Entries[2] = m.Entries[2], m.Entries[1] }, "sorted"},
		{"duplicate", func(m *Manifest) { m.Entries[2] = m.Entries[1] }, "sorted"},
		{"dot dot", func(m *Manifest) { m.Entries[1].Path = ".." }, `".."`},
		{"absolute", func(m *Manifest) { m.Entries[1].Path = "/etc" }, "absolute"},
		{"empty element", func(m *Manifest) { m.Entries[4].Path = "dir//empty" }, "empty element"},
		{"not utf8", func(m *Manifest) { m.Entries[1].Path = "a\xff" }, "UTF-8"},
		{"parent missing", func(m *Manifest) { m.Entries[4].Path = "dis/empty" }, "parent"},
		{"through a link", func(m *Manifest) {
			m.Entries = append(m.Entries[:6:6], Entry{Path: "dir/link/x", Type: TypeFile}, m.Entries[6])
		}, "parent"},
		{"size mismatch", func(m *Manifest) { m.Entries[1].Size = 5 }, "chunks hold"},
		{"zero chunk", func(m *Manifest) { m.Entries[1].Chunks[0].Size = 0 }, "size 0"},
		{"dir with chunks", func(m *Manifest) { m.Entries[2].Chunks = m.Entries[1].Chunks }, "directory"},
		{"link without target", func(m *Manifest) { m.Entries[5].Target = "" }, "target"},
		{"link with mode", func(m *Manifest) { m.Entries[5].Mode = 0o777 }, "mode"},
		{"mode bits", func(m *Manifest) { m.Entries[1].Mode = 0o10644 }, "mode"},
		{"type", func(m *Manifest) { m.Entries[1].Type = "fifo" }, "unknown type"},
		{"file root with children", func(m *Manifest) { m.Entries[0] = Entry{Path: RootPath, Type: TypeFile} }, "file root"},
		{"link root", func(m *Manifest) { m.Entries = []Entry{{Path: RootPath, Type: TypeSymlink, Target: "x"}} }, "root cannot"},
	}
	for _, tt := range tests {
		m := validManifest()
		tt.change(&m)
		err := m.Validate()
		if err == nil || !errors.Is(err, ErrBadManifest) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an ErrBadManifest saying %q", tt.name, err, tt.want)
		}
	}
}

func TestDecodeManifestRejectsGarbage(t *testing.T) {
	t.Parallel()
	m := validManifest()
	data, err := m.Encode()
	mustNo(t, err)
	for _, bad := range [][]byte{nil, []byte("{}"), data[:len(data)-1], append(append([]byte{}, data...), 0), []byte(manifestMagic + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")} {
		if _, err := DecodeManifest(bad); !errors.Is(err, ErrBadManifest) {
			t.Errorf("DecodeManifest(%q...) = %v, want ErrBadManifest", truncate(string(bad), 20), err)
		}
	}
}

func FuzzDecodeManifest(f *testing.F) {
	m := validManifest()
	data, _ := m.Encode()
	f.Add(data)
	root := Manifest{Version: ManifestVersion, Entries: []Entry{{Path: RootPath, Type: TypeFile, Size: 0}}}
	data, _ = root.Encode()
	f.Add(data)
	f.Add([]byte(manifestMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			return
		}
		again, err := m.Encode()
		if err != nil {
			t.Fatalf("a decoded manifest does not encode: %v", err)
		}
		m2, err := DecodeManifest(again)
		if err != nil {
			t.Fatalf("a re-encoded manifest does not decode: %v", err)
		}
		if diff := cmp.Diff(m, m2); diff != "" {
			t.Fatalf("re-encoding changed the manifest:\n%s", diff)
		}
	})
}

func TestBuildManifestOfAFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "model.bin")
	data := randomBytes(3, 2<<20)
	mustNo(t, os.WriteFile(src, data, 0o640))
	link := filepath.Join(tmp, "link")
	mustNo(t, os.Symlink(src, link))
	tree, err := BuildManifest(ctx, link, BuildOptions{})
	mustNo(t, err)
	if len(tree.Manifest.Entries) != 1 || tree.Manifest.Entries[0].Type != TypeFile || tree.Stats.Files != 1 {
		t.Fatalf("manifest of a file: %+v", tree.Manifest.Entries)
	}
	store := newMemStore()
	_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
	mustNo(t, err)
	dst := filepath.Join(tmp, "node", "mnt", "model.bin")
	st, err := Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
	mustNo(t, err)
	got, err := os.ReadFile(dst)
	mustNo(t, err)
	if string(got) != string(data) || st.Written != 1 {
		t.Fatalf("applied file differs, or stats %+v", st)
	}
	fi, err := os.Stat(dst)
	mustNo(t, err)
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", fi.Mode())
	}
	st, err = Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
	mustNo(t, err)
	if st.Written != 0 || st.Unchanged != 1 {
		t.Fatalf("second apply: %+v, want nothing written", st)
	}
	if _, err := Apply(ctx, &tree.Manifest, store, filepath.Join(tmp, "node"), ApplyOptions{}); err == nil {
		t.Fatal("applying a file manifest onto a directory succeeded")
	}
}
