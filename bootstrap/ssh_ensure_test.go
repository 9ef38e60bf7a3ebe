package bootstrap

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/testenv/hosts"
)

// fakeAgent writes a stand-in agent that sleeps; content varies the
// binary.
func fakeAgent(t *testing.T, dir, content string) string {
	t.Helper()
	p := filepath.Join(dir, "sky-agent")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n# "+content+"\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// pidHealth is healthy while the process in the node's pid file runs.
func pidHealth(home string, cfg api.AgentConfig) Health {
	return func(ctx context.Context) (*api.AgentHealth, error) {
		data, err := os.ReadFile(filepath.Join(home, PIDPath))
		if err != nil {
			return nil, err
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		if pid <= 0 || syscall.Kill(pid, 0) != nil || isZombie(pid) {
			return nil, errors.New("connection refused")
		}
		return &api.AgentHealth{ConfigHash: cfg.Hash(), PID: pid}, nil
	}
}

// counting counts what a transport was asked to change.
type counting struct {
	*SSH
	writes, gzWrites, starts atomic.Int32
}

func (c *counting) WriteFile(ctx context.Context, p string, r io.Reader, mode fs.FileMode) error {
	c.writes.Add(1)
	return c.SSH.WriteFile(ctx, p, r, mode)
}

func (c *counting) WriteFileGzip(ctx context.Context, p string, gz io.Reader, mode fs.FileMode, sum string) error {
	c.gzWrites.Add(1)
	return c.SSH.WriteFileGzip(ctx, p, gz, mode, sum)
}

func (c *counting) StartDetached(ctx context.Context, argv, env []string, logPath string) (int, error) {
	c.starts.Add(1)
	return c.SSH.StartDetached(ctx, argv, env, logPath)
}

func killRecorded(t *testing.T, home string) {
	data, _ := os.ReadFile(filepath.Join(home, PIDPath))
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(data))); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestSSHEnsureUploadsOnlyWhatDiffers(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	ctx := context.Background()
	tr := &counting{SSH: dial(t, sshConfig(h))}
	binDir := t.TempDir()
	cfg := api.AgentConfig{Cluster: "c", Home: h.Home, Marker: h.Home}
	node := Node{Name: h.Name, AgentBinaries: map[string]string{runtime.GOARCH: fakeAgent(t, binDir, "v1"), "other": "/nonexistent"},
		Config: cfg, Health: pidHealth(h.Home, cfg), Timeout: 5 * time.Second}
	t.Cleanup(func() { killRecorded(t, h.Home) })

	res, err := Ensure(ctx, tr, node)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Uploaded || !res.Started || tr.gzWrites.Load() != 1 {
		t.Fatalf("first Ensure = %+v with %d compressed uploads, want one upload and a start", res, tr.gzWrites.Load())
	}
	if st, err := os.Stat(filepath.Join(h.Home, ConfigPath)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config mode = %v (%v), want 0600", st.Mode().Perm(), err)
	}
	if st, err := os.Stat(filepath.Join(h.Home, Dir)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("%s mode = %v (%v), want 0700", Dir, st.Mode().Perm(), err)
	}

	w, g, s := tr.writes.Load(), tr.gzWrites.Load(), tr.starts.Load()
	res, err = Ensure(ctx, tr, node)
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded || res.Started || tr.writes.Load() != w || tr.gzWrites.Load() != g || tr.starts.Load() != s {
		t.Errorf("second Ensure = %+v and wrote %d files, uploaded %d, started %d; want nothing done",
			res, tr.writes.Load()-w, tr.gzWrites.Load()-g, tr.starts.Load()-s)
	}

	// The agent died: it is started again, the binary is not re-sent.
	killRecorded(t, h.Home)
	waitFor(t, "the agent to die", func() bool { _, err := node.Health(ctx); return err != nil })
	res, err = Ensure(ctx, tr, node)
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded || !res.Started || tr.gzWrites.Load() != g {
		t.Errorf("Ensure after the agent died = %+v, want a start without upload", res)
	}

	// A new build is uploaded, and the old agent replaced.
	data, _ := os.ReadFile(filepath.Join(h.Home, PIDPath))
	oldPID, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	node.AgentBinaries[runtime.GOARCH] = fakeAgent(t, binDir, "v2, a longer build")
	res, err = Ensure(ctx, tr, node)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Uploaded || !res.Started || tr.gzWrites.Load() != g+1 {
		t.Errorf("Ensure with a new binary = %+v, want upload and start", res)
	}
	if syscall.Kill(oldPID, 0) == nil && !isZombie(oldPID) {
		t.Errorf("the old agent %d still runs", oldPID)
	}

	node.AgentBinaries = map[string]string{"riscv64": "/x"}
	if _, err := Ensure(ctx, tr, node); err == nil || !strings.Contains(err.Error(), "no sky-agent built for it") {
		t.Errorf("Ensure without a binary for the node's architecture: %v", err)
	}
}

func TestSSHEnsureReportsAnUnhealthyAgent(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	tr := dial(t, sshConfig(h))
	bin := filepath.Join(t.TempDir(), "sky-agent")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'listen 10.0.0.5:26590: address already in use' >&2\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killRecorded(t, h.Home) })
	node := Node{Name: "10.0.0.5", AgentBinary: bin, Config: api.AgentConfig{Cluster: "c"},
		Health:  func(context.Context) (*api.AgentHealth, error) { return nil, errors.New("connection refused") },
		Timeout: 300 * time.Millisecond}
	_, err := Ensure(context.Background(), tr, node)
	for _, want := range []string{"10.0.0.5: uploaded agent but it was not healthy after 300ms", "connection refused", "address already in use"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
}

func TestRemoveCleansTheNode(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	ctx := context.Background()
	tr := dial(t, sshConfig(h))
	cfg := api.AgentConfig{Cluster: "c", Home: h.Home, Marker: h.Home}
	node := Node{Name: h.Name, AgentBinary: fakeAgent(t, t.TempDir(), "v1"), Config: cfg,
		Health: pidHealth(h.Home, cfg), Timeout: 5 * time.Second}
	t.Cleanup(func() { killRecorded(t, h.Home) })
	if _, err := Ensure(ctx, tr, node); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(h.Home, PIDPath))
	agentPID, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	// A job process that left the agent's process group and session.
	orphan, err := tr.StartDetached(ctx, []string{"sleep", "60"}, []string{api.MarkerEnv + "=" + h.Home}, "sky_logs/job.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(orphan, syscall.SIGKILL) })
	for _, d := range []string{"sky_workdir", ".sky/blobs", "mine"} {
		if err := os.MkdirAll(filepath.Join(h.Home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := Remove(ctx, tr); err != nil {
		t.Fatal(err)
	}
	t.Logf("Remove took %s", time.Since(start))
	for _, pid := range []int{agentPID, orphan} {
		if syscall.Kill(pid, 0) == nil && !isZombie(pid) {
			t.Errorf("process %d still runs after Remove", pid)
		}
	}
	for _, p := range append(footprint, ".sky") {
		if _, err := os.Stat(filepath.Join(h.Home, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is left after Remove (%v)", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(h.Home, "mine")); err != nil {
		t.Errorf("Remove took the user's own directory: %v", err)
	}
	if err := Remove(ctx, tr); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestEnsureAllInParallel(t *testing.T) {
	hs := hosts.NewInProcess(t, 3)
	bin := fakeAgent(t, t.TempDir(), "v1")
	targets := make([]Target, len(hs)+1)
	for i, h := range hs {
		cfg := api.AgentConfig{Cluster: "c", Rank: i, Home: h.Home, Marker: h.Home}
		targets[i] = Target{
			Connect: func(ctx context.Context) (Transport, error) { return DialSSH(ctx, sshConfig(h)) },
			Node:    Node{Name: h.Name, AgentBinary: bin, Config: cfg, Health: pidHealth(h.Home, cfg), Timeout: 5 * time.Second},
		}
		t.Cleanup(func() { killRecorded(t, h.Home) })
	}
	dead := hosts.NewInProcess(t, 1)[0]
	dead.Kill(t)
	targets[3] = Target{Connect: func(ctx context.Context) (Transport, error) { return DialSSH(ctx, sshConfig(dead)) },
		Node: Node{Name: dead.Name, AgentBinary: bin}}
	res, err := EnsureAll(context.Background(), targets)
	if err == nil || !strings.Contains(err.Error(), dead.Name) || strings.Count(err.Error(), "inproc-") != 1 {
		t.Errorf("EnsureAll with one dead host: %v; want one error naming it", err)
	}
	for i := range hs {
		if !res[i].Started {
			t.Errorf("node %d: %+v, want started", i, res[i])
		}
	}
}

func TestSSHEnsureReportsAnAgentThatDies(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	tr := dial(t, sshConfig(h))
	bin := filepath.Join(t.TempDir(), "sky-agent")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'agent config: home \"\" is not an absolute path' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	node := Node{Name: "10.0.0.5", AgentBinary: bin, Config: api.AgentConfig{Cluster: "c"},
		Health:  func(context.Context) (*api.AgentHealth, error) { return nil, errors.New("connection refused") },
		Timeout: 10 * time.Second}
	start := time.Now()
	_, err := Ensure(context.Background(), tr, node)
	if err == nil || !strings.Contains(err.Error(), "10.0.0.5: agent exited right after start") || !strings.Contains(err.Error(), "is not an absolute path") {
		t.Errorf("err = %v, want the agent's exit reported with its log", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the agent's exit was noticed after %s, not at once", took)
	}
}
