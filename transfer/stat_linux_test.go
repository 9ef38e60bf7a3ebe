package transfer

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// lstatAt says what os.Lstat says, for every kind of entry a tree holds.
func TestLstatAtMatchesLstat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustNo(t, os.WriteFile(filepath.Join(dir, "file"), []byte("data"), 0o640))
	mustNo(t, os.Mkdir(filepath.Join(dir, "dir"), 0o755))
	mustNo(t, os.Chmod(filepath.Join(dir, "dir"), 0o755|os.ModeSticky))
	mustNo(t, os.Symlink("file", filepath.Join(dir, "link")))
	mustNo(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	mustNo(t, os.WriteFile(filepath.Join(dir, "setuid"), nil, 0o755))
	mustNo(t, os.Chmod(filepath.Join(dir, "setuid"), 0o755|os.ModeSetuid|os.ModeSetgid))
	d, err := os.Open(dir)
	mustNo(t, err)
	defer d.Close()
	for _, name := range []string{"file", "dir", "link", "fifo", "setuid"} {
		want, err := os.Lstat(filepath.Join(dir, name))
		mustNo(t, err)
		got, err := lstatAt(d, int(d.Fd()), name)
		mustNo(t, err)
		if got.Name() != want.Name() || got.Mode() != want.Mode() || got.Size() != want.Size() ||
			!got.ModTime().Equal(want.ModTime()) || got.IsDir() != want.IsDir() {
			t.Errorf("%s: lstatAt says %s %v %d %v, Lstat %s %v %d %v", name,
				got.Name(), got.Mode(), got.Size(), got.ModTime(), want.Name(), want.Mode(), want.Size(), want.ModTime())
		}
		gd, gi, gc := sysIdentity(got)
		wd, wi, wc := sysIdentity(want)
		if gd != wd || gi != wi || gc != wc || ownedByMe(got) != ownedByMe(want) {
			t.Errorf("%s: identity %d/%d/%d, Lstat's %d/%d/%d", name, gd, gi, gc, wd, wi, wc)
		}
	}
	if _, err := lstatAt(d, int(d.Fd()), "missing"); !os.IsNotExist(err) {
		t.Errorf("lstatAt of a missing entry: %v, want not-exist", err)
	}
}
