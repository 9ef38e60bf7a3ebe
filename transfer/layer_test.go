package transfer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestApplyViewLooksOnlyAtChangedPaths: with a View, Apply takes what the
// lower layer's record says for every path the view's own layer does not
// hold, and looks at the others. The destination here is a plain copy
// standing in for an overlayfs view, so a change at a path Changed does
// not report shows that it was not looked at.
func TestApplyViewLooksOnlyAtChangedPaths(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tmp := t.TempDir()
	src, lower, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "lower"), filepath.Join(tmp, "dst")
	mustNo(t, os.MkdirAll(filepath.Join(src, "sub"), 0o755))
	for _, name := range []string{"same.py", "edited.py", "deleted.py", "sub/new-dir-file.py"} {
		mustNo(t, osWriteFile(src, name, "v1 "+name))
	}
	store := newMemStore()
	tree := uploadTree(t, src, store)
	_, err := Apply(ctx, &tree.Manifest, store, lower, ApplyOptions{StateFile: lower + ".state"})
	mustNo(t, err)
	layer, err := LoadLayer(lower, lower+".state")
	mustNo(t, err)
	state := filepath.Join(tmp, "dst.state")
	_, err = Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{StateFile: state})
	mustNo(t, err)

	// The job edits two files and deletes one; the view's own layer
	// holds edited.py and deleted.py (as a whiteout), not same.py.
	mustNo(t, osWriteFile(dst, "same.py", "job's edit, unseen"))
	mustNo(t, osWriteFile(dst, "edited.py", "job's edit"))
	mustNo(t, os.Remove(filepath.Join(dst, "deleted.py")))
	upper := []string{"edited.py", "deleted.py"}
	// The source gains a file the lower layer lacks.
	mustNo(t, osWriteFile(src, "added.py", "v1 added.py"))
	tree = uploadTree(t, src, store)
	view := &View{Lower: layer, Upper: upper, Hiding: upper}
	st, err := Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{StateFile: state, View: view})
	mustNo(t, err)
	if st.Written != 3 {
		t.Errorf("stats %+v: want edited.py, deleted.py and added.py written", st)
	}
	for name, want := range map[string]string{
		"same.py": "job's edit, unseen", "edited.py": "v1 edited.py", "deleted.py": "v1 deleted.py",
		"added.py": "v1 added.py", "sub/new-dir-file.py": "v1 sub/new-dir-file.py",
	} {
		data, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(name)))
		mustNo(t, err)
		if string(data) != want {
			t.Errorf("%s = %q, want %q", name, data, want)
		}
	}
}

// TestLoadLayerWithoutRecord: a tree without Apply's record cannot be a
// lower layer; the caller then looks at every path.
func TestLoadLayerWithoutRecord(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := LoadLayer(dir, filepath.Join(dir, "missing.state")); err == nil {
		t.Fatal("LoadLayer of a tree without a record: no error")
	}
}

// LayerFrom the record AdoptCopy returns says what LoadLayer of the
// copy's own record says.
func TestLayerFromAdoptedRecord(t *testing.T) {
	t.Parallel()
	_, built, dst, _, tree := builtAndCopied(t, map[string]string{"a": "a", "d/b": "b"})
	rec, err := AdoptCopy(&tree.Manifest, dst, built, built+".state", ApplyOptions{StateFile: dst + ".state"})
	mustNo(t, err)
	got, err := LayerFrom(built, rec)
	mustNo(t, err)
	want, err := LoadLayer(built, built+".state")
	mustNo(t, err)
	if got.dir != want.dir || len(got.infos) != len(want.infos) {
		t.Fatalf("LayerFrom: %s with %d entries, LoadLayer: %s with %d", got.dir, len(got.infos), want.dir, len(want.infos))
	}
	for i := range got.infos {
		g, w := &got.infos[i], &want.infos[i]
		if g.e.Path != w.e.Path || g.rec != w.rec || g.Mode() != w.Mode() || !g.ModTime().Equal(w.ModTime()) || g.Size() != w.Size() {
			t.Errorf("entry %s: LayerFrom %v %v %d %+v, LoadLayer %v %v %d %+v", g.e.Path,
				g.Mode(), g.ModTime(), g.Size(), g.rec, w.Mode(), w.ModTime(), w.Size(), w.rec)
		}
	}
}

// TestViewLookupMarksWhatTheUpperLayerHoldsOrHides: a path the upper layer
// holds, and every path below one it hides, is looked at; a sibling whose
// name only starts the same (a-b beside a) is not.
func TestViewLookupMarksWhatTheUpperLayerHoldsOrHides(t *testing.T) {
	t.Parallel()
	m := &Manifest{Version: ManifestVersion}
	for _, p := range []string{RootPath, "a", "a-b", "a/x", "a/y", "a/y/z", "b", "c"} {
		m.Entries = append(m.Entries, Entry{Path: p, Type: TypeDir})
	}
	lower := &Layer{}
	for _, tc := range []struct {
		upper, hiding []string
		want          []string
	}{
		{[]string{"b", "a"}, []string{"a"}, []string{"a", "a/x", "a/y", "a/y/z", "b"}},
		{[]string{"a/y"}, []string{"a/y"}, []string{"a/y", "a/y/z"}},
		{[]string{"gone"}, nil, nil},
		{[]string{RootPath}, []string{RootPath}, []string{RootPath, "a", "a-b", "a/x", "a/y", "a/y/z", "b", "c"}},
	} {
		l := (&View{Lower: lower, Upper: tc.upper, Hiding: tc.hiding}).lookupIn(m)
		var got []string
		for _, i := range l.changedIdx {
			got = append(got, m.Entries[i].Path)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("upper %q, hiding %q: looked at %q, want %q", tc.upper, tc.hiding, got, tc.want)
		}
		l.index()
		got = nil
		for i, e := range m.Entries {
			if l.changed[i] {
				got = append(got, e.Path)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("upper %q, hiding %q, indexed: looked at %q, want %q", tc.upper, tc.hiding, got, tc.want)
		}
	}
}
