// Package testenv holds what tests need to run sky-coord for real: the
// binaries built once per test process, a CLI runner with its own
// SKY_COORD_HOME, replicated coordinators as processes, and process
// inspection. Only tests and the benchmarks import it.
package testenv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/procscan"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds bin/sky-coord and bin/sky-agent once per test process
// and returns the directory holding them.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		binDir, buildErr = os.MkdirTemp("", "sky-coord-test-bin-")
		if buildErr != nil {
			return
		}
		// Other users run these too (NewCLIAs).
		if buildErr = os.Chmod(binDir, 0o755); buildErr != nil {
			return
		}
		for _, name := range []string{"sky-coord", "sky-coord-server", "sky-agent", "sky-mount"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), "./cmd/"+name)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = &buildError{name: name, out: string(out), err: err}
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("build binaries: %v", buildErr)
	}
	return binDir
}

type buildError struct {
	name, out string
	err       error
}

func (e *buildError) Error() string { return e.name + ": " + e.err.Error() + "\n" + e.out }

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// CLI runs bin/sky-coord with its own SKY_COORD_HOME.
type CLI struct {
	t    testing.TB
	Bin  string
	Home string
	Dir  string // working directory of commands
	// Env is added to every command's environment.
	Env []string
	// cred, when set, runs the commands as another user (NewCLIAs).
	cred *syscall.Credential
}

// NewCLIAs is NewCLI for commands run as another user (uid, gid): its home
// and working directory belong to that user. Only root can do this.
func NewCLIAs(t testing.TB, uid, gid uint32) *CLI {
	t.Helper()
	bin := Binaries(t)
	mk := func(prefix string) string {
		d, err := os.MkdirTemp("", prefix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, int(uid), int(gid)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		return d
	}
	c := &CLI{t: t, Bin: filepath.Join(bin, "sky-coord"), Home: mk("sky-coord-test-home-"), Dir: mk("sky-coord-test-dir-"),
		cred: &syscall.Credential{Uid: uid, Gid: gid}}
	t.Cleanup(func() {
		c.Run("down", "-a", "-y")
		c.Run("server", "stop")
	})
	return c
}

// WriteFile writes a file below Dir, owned by the CLI's user.
func (c *CLI) WriteFile(name, content string) {
	c.t.Helper()
	p := filepath.Join(c.Dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
	if c.cred != nil {
		for q := p; q != c.Dir; q = filepath.Dir(q) {
			if err := os.Chown(q, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				c.t.Fatal(err)
			}
		}
	}
}

// NewCLI returns a CLI with a fresh home; its coordinator is stopped and
// every cluster torn down at cleanup.
func NewCLI(t testing.TB) *CLI {
	t.Helper()
	bin := Binaries(t)
	c := &CLI{t: t, Bin: filepath.Join(bin, "sky-coord"), Home: t.TempDir(), Dir: t.TempDir()}
	t.Cleanup(func() {
		c.Run("down", "-a", "-y")
		c.Run("server", "stop")
	})
	return c
}

// Result is one command's outcome.
type Result struct {
	Stdout, Stderr string
	Code           int
	Took           time.Duration
}

// Run runs the CLI with args and returns its output and exit code.
func (c *CLI) Run(args ...string) Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Dir = c.Dir
	cmd.Env = append(append(os.Environ(), "SKY_COORD_HOME="+c.Home, "NO_COLOR=1"), c.Env...)
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
		cmd.Env = append(cmd.Env, "HOME="+c.Home)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String(), Took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		res.Code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run sky-coord %v: %v", args, err)
	}
	c.t.Logf("$ sky-coord %s  (exit %d, %s)\n%s%s", strings.Join(args, " "), res.Code, res.Took.Round(time.Millisecond), res.Stdout, res.Stderr)
	return res
}

// ProcessesWithEnvPrefix lists pids whose environment has a variable
// KEY=VALUE with VALUE starting with prefix (Linux only; nil elsewhere).
func ProcessesWithEnvPrefix(key, prefix string) []int {
	return procscan.WithEnvPrefix(key + "=" + prefix)
}
