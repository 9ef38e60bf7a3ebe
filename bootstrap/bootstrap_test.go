package bootstrap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// TestEnsureIsIdempotent installs a stand-in agent (a script that sleeps)
// and checks that a second Ensure on the ready node does nothing.
func TestEnsureIsIdempotent(t *testing.T) {
	home := t.TempDir()
	bin := filepath.Join(t.TempDir(), "fake-agent")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr := NewLocal(home)
	cfg := api.AgentConfig{Cluster: "c", Rank: 0, Home: home, Marker: home}
	health := func(ctx context.Context) (*api.AgentHealth, error) {
		data, err := os.ReadFile(filepath.Join(home, PIDPath))
		if err != nil {
			return nil, err
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		if syscall.Kill(pid, 0) != nil {
			return nil, errors.New("not running")
		}
		return &api.AgentHealth{ConfigHash: cfg.Hash(), PID: pid}, nil
	}
	node := Node{Name: "n0", AgentBinary: bin, Config: cfg, Health: health, Timeout: 5 * time.Second}
	ctx := context.Background()
	res, err := Ensure(ctx, tr, node)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Uploaded || !res.Started {
		t.Fatalf("first Ensure = %+v, want upload and start", res)
	}
	t.Cleanup(func() {
		data, _ := os.ReadFile(filepath.Join(home, PIDPath))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	})
	st, err := os.Stat(filepath.Join(home, ConfigPath))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config file mode = %v (%v), want 0600", st.Mode().Perm(), err)
	}
	res, err = Ensure(ctx, tr, node)
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded || res.Started {
		t.Errorf("second Ensure = %+v, want nothing done", res)
	}
}

func TestEnsureReportsAnAgentThatDies(t *testing.T) {
	home := t.TempDir()
	bin := filepath.Join(t.TempDir(), "bad-agent")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'cannot bind 1.2.3.4:26590' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	node := Node{Name: "node 1 (1.2.3.4)", AgentBinary: bin, Config: api.AgentConfig{Cluster: "c"},
		Health: func(context.Context) (*api.AgentHealth, error) { return nil, errors.New("connection refused") }, Timeout: 5 * time.Second}
	_, err := Ensure(context.Background(), NewLocal(home), node)
	if err == nil || !strings.Contains(err.Error(), "node 1 (1.2.3.4)") || !strings.Contains(err.Error(), "cannot bind") {
		t.Fatalf("err = %v, want the node named and the agent's last log line", err)
	}
}
