package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Local is a Transport to a node that is a directory on this machine.
type Local struct {
	home string
}

var (
	_ Transport = (*Local)(nil)
	_ Remover   = (*Local)(nil)
)

// NewLocal returns a Transport whose node home is dir.
func NewLocal(dir string) *Local { return &Local{home: dir} }

// Home implements Transport.
func (l *Local) Home() string { return l.home }

func (l *Local) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.home, p)
}

// FileSHA256 implements Transport.
func (l *Local) FileSHA256(_ context.Context, p string) (string, error) {
	f, err := os.Open(l.abs(p))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ReadFile implements Transport.
func (l *Local) ReadFile(_ context.Context, p string) ([]byte, error) {
	return os.ReadFile(l.abs(p))
}

// WriteFile implements Transport: it writes beside the target, then renames.
func (l *Local) WriteFile(_ context.Context, p string, r io.Reader, mode fs.FileMode) error {
	dst := l.abs(p)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if f, ok := r.(*os.File); ok && mode&0o111 != 0 {
		// A binary from this machine: a hard link writes nothing, so no
		// forked child can hold it open for writing when it is exec'd.
		tmpName := dst + ".link-tmp"
		_ = os.Remove(tmpName)
		if err := os.Link(f.Name(), tmpName); err == nil {
			return os.Rename(tmpName, dst)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return os.Rename(tmp.Name(), dst)
}

// StartDetached implements Transport: the process gets its own session and
// its output goes to logPath; it is reaped in the background while this
// process lives and adopted by init after.
func (l *Local) StartDetached(_ context.Context, argv, env []string, logPath string) (int, error) {
	logf, err := os.OpenFile(l.abs(logPath), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = l.home
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Another goroutine's fork may briefly hold a just-written binary open
	// for writing (ETXTBSY): retry a few times.
	for i := 0; ; i++ {
		err = cmd.Start()
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || i == 20 {
			break
		}
		time.Sleep(10 * time.Millisecond)
		cmd = rebuild(cmd)
	}
	if err != nil {
		return 0, err
	}
	go cmd.Wait() //nolint:errcheck // reaping only; the agent's fate is read from its health
	return cmd.Process.Pid, nil
}

// Signal implements Transport.
func (l *Local) Signal(_ context.Context, pid int, sig int) error {
	return syscall.Kill(pid, syscall.Signal(sig))
}

// Close implements Transport.
func (l *Local) Close() error { return nil }

// RemoveAll implements Remover.
func (l *Local) RemoveAll(_ context.Context, p string) error {
	a := l.abs(p)
	if a == l.home || a == string(filepath.Separator) {
		return fmt.Errorf("refusing to remove %s", a)
	}
	return os.RemoveAll(a)
}

// rebuild copies an unstarted exec.Cmd (a Cmd cannot be started twice).
func rebuild(c *exec.Cmd) *exec.Cmd {
	n := exec.Command(c.Path, c.Args[1:]...)
	n.Dir, n.Env, n.Stdout, n.Stderr, n.SysProcAttr = c.Dir, c.Env, c.Stdout, c.Stderr, c.SysProcAttr
	return n
}
