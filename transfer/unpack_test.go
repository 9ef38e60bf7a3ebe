package transfer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// rawArchive builds a tar.gz from headers; a regular file's content is
// data[its name].
func rawArchive(t *testing.T, hs []*tar.Header, data map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range hs {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data[h.Name]))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(data[h.Name])); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func reg(name string) *tar.Header { return &tar.Header{Typeflag: tar.TypeReg, Name: name} }
func dir(name string) *tar.Header { return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755} }
func symlink(name, target string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}
}

func TestUnpackRejectsTraversal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		hs   []*tar.Header
	}{
		{"dot dot", []*tar.Header{reg("../evil")}},
		{"dot dot in the middle", []*tar.Header{reg("a/../../evil")}},
		{"absolute", []*tar.Header{reg("/tmp/evil")}},
		{"through a symlink", []*tar.Header{symlink("ln", "/tmp"), reg("ln/evil")}},
		{"through a relative symlink", []*tar.Header{symlink("ln", ".."), reg("ln/evil")}},
		{"dir through a symlink", []*tar.Header{symlink("ln", "/tmp"), dir("ln/sub/")}},
		{"hard link outside", []*tar.Header{{Typeflag: tar.TypeLink, Name: "h", Linkname: "../x"}}},
		{"hard link absolute", []*tar.Header{{Typeflag: tar.TypeLink, Name: "h", Linkname: "/etc/passwd"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			dest := filepath.Join(base, "dest")
			writeTree(t, dest, map[string]string{"old": "kept"})
			arch := rawArchive(t, tt.hs, nil)
			err := Unpack(context.Background(), bytes.NewReader(arch), dest, false)
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Unpack: %v, want ErrUnsafePath", err)
			}
			// Nothing escaped, the old tree is untouched, nothing is left
			// beside it.
			if _, err := os.Lstat(filepath.Join(base, "evil")); err == nil {
				t.Errorf("evil was written outside dest")
			}
			if diff := cmp.Diff(map[string]entry{"old": snapshot(t, dest)["old"]}, snapshot(t, dest)); diff != "" {
				t.Errorf("dest changed (-want +got):\n%s", diff)
			}
			ents, _ := os.ReadDir(base)
			if len(ents) != 1 {
				t.Errorf("base holds %d entries, want only dest: %v", len(ents), ents)
			}
		})
	}
}

func TestUnpackReplacesOldTree(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dest := filepath.Join(base, "sky_workdir")
	writeTree(t, dest, map[string]string{"stale.txt": "old", "keep/me": "old"})
	arch := rawArchive(t, []*tar.Header{dir("keep/"), reg("keep/me"), reg("new.txt")},
		map[string]string{"keep/me": "new", "new.txt": "hello"})
	if err := Unpack(context.Background(), bytes.NewReader(arch), dest, false); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	got := map[string]string{}
	for k, e := range snapshot(t, dest) {
		got[k] = e.Data
	}
	want := map[string]string{"keep": "", "keep/me": "new", "new.txt": "hello"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dest (-want +got):\n%s", diff)
	}
	ents, _ := os.ReadDir(base)
	if len(ents) != 1 {
		t.Errorf("leftovers beside dest: %v", ents)
	}
}

func TestUnpackFileMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		hs      []*tar.Header
		old     map[string]string // created under base before unpacking
		wantErr string
	}{
		{"new file", []*tar.Header{reg("x")}, nil, ""},
		{"replaces a file", []*tar.Header{reg("x")}, map[string]string{"dest": "old"}, ""},
		{"replaces a directory", []*tar.Header{reg("x")}, map[string]string{"dest/a": "old"}, ""},
		{"two entries", []*tar.Header{reg("x"), reg("y")}, nil, "more than one entry"},
		{"a directory", []*tar.Header{dir("x/")}, nil, "not a regular file"},
		{"empty", nil, nil, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			writeTree(t, base, tt.old)
			dest := filepath.Join(base, "dest")
			arch := rawArchive(t, tt.hs, map[string]string{"x": "content"})
			err := Unpack(context.Background(), bytes.NewReader(arch), dest, true)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Unpack: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			b, err := os.ReadFile(dest)
			if err != nil || string(b) != "content" {
				t.Errorf("dest = %q, %v; want %q", b, err, "content")
			}
			ents, _ := os.ReadDir(base)
			if len(ents) != 1 {
				t.Errorf("leftovers beside dest: %v", ents)
			}
		})
	}
}

func TestUnpackDuplicateAndLinks(t *testing.T) {
	t.Parallel()
	dest := filepath.Join(t.TempDir(), "d")
	arch := rawArchive(t, []*tar.Header{
		reg("a"),
		symlink("a", "b"), // replaces the file
		reg("b"),
		{Typeflag: tar.TypeLink, Name: "c", Linkname: "b"},
		symlink("up", "../outside"), // kept as data: nothing is written through it
	}, map[string]string{"a": "1", "b": "2"})
	if err := Unpack(context.Background(), bytes.NewReader(arch), dest, false); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	got := snapshot(t, dest)
	for k, e := range got {
		e.MTime, e.Mode = 0, 0
		got[k] = e
	}
	want := map[string]entry{
		"a":  {Type: "link", Link: "b"},
		"b":  {Type: "file", Data: "2"},
		"c":  {Type: "file", Data: "2"},
		"up": {Type: "link", Link: "../outside"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dest (-want +got):\n%s", diff)
	}
}

func TestUnpackBadInput(t *testing.T) {
	t.Parallel()
	dest := filepath.Join(t.TempDir(), "d")
	if err := Unpack(context.Background(), strings.NewReader("not gzip"), dest, false); err == nil {
		t.Errorf("Unpack(garbage) succeeded")
	}
	if _, err := os.Lstat(dest); err == nil {
		t.Errorf("dest created from garbage")
	}
	if err := Unpack(context.Background(), strings.NewReader(""), "/", false); err == nil {
		t.Errorf("Unpack to / succeeded")
	}
}

// TestMergeKeepsWhatTheArchiveLacks: Merge is rsync without --delete.
func TestMergeKeepsWhatTheArchiveLacks(t *testing.T) {
	src, dest := t.TempDir(), filepath.Join(t.TempDir(), "wd")
	for name, body := range map[string]string{"a.txt": "new a", "sub/b.txt": "new b", "sub/deep/c.txt": "c"} {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"a.txt": "old a", "sub/b.txt": "old b", "sub/out.log": "job output", "ckpt/model.bin": "weights"} {
		if err := os.MkdirAll(filepath.Join(dest, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dest, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := Pack(context.Background(), src, &buf); err != nil {
		t.Fatal(err)
	}
	if err := Merge(context.Background(), &buf, dest); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a.txt": "new a", "sub/b.txt": "new b", "sub/deep/c.txt": "c", "sub/out.log": "job output", "ckpt/model.bin": "weights"}
	for name, body := range want {
		got, err := os.ReadFile(filepath.Join(dest, name))
		if err != nil || string(got) != body {
			t.Errorf("%s = %q (%v), want %q", name, got, err, body)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), "*.sky-tmp-*")); len(left) > 0 {
		t.Errorf("temporary trees left behind: %v", left)
	}
}
