package bootstrap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// Layout of what bootstrap puts on a node, relative to its home.
const (
	Dir        = ".sky-coord-agent"
	BinaryPath = Dir + "/sky-agent"
	ConfigPath = Dir + "/config.json"
	PIDPath    = Dir + "/agent.pid"
	LogPath    = Dir + "/agent.log"
)

// Health asks a node's agent for its health; an error means not healthy.
type Health func(ctx context.Context) (*api.AgentHealth, error)

// Node is what Ensure needs to bring one node up.
type Node struct {
	// Name names the node in errors ("127.0.1.2", "train node 1").
	Name string
	// AgentBinary is the local path of the sky-agent binary to install.
	AgentBinary string
	Config      api.AgentConfig
	Health      Health
	// Timeout bounds the wait for a started agent to be healthy.
	Timeout time.Duration
}

// Result says what Ensure did.
type Result struct {
	Uploaded bool // the agent binary was (re)installed
	Started  bool // an agent process was started
}

// Ensure makes the node run a healthy agent with exactly this binary and
// config. When it already does, it does nothing.
func Ensure(ctx context.Context, t Transport, n Node) (Result, error) {
	var res Result
	cfgData, err := json.MarshalIndent(n.Config, "", "  ")
	if err != nil {
		return res, fmt.Errorf("%s: encode agent config: %w", n.Name, err)
	}
	wantHash := n.Config.Hash()
	localSum, err := fileSHA256(n.AgentBinary)
	if err != nil {
		return res, fmt.Errorf("%s: read agent binary: %w", n.Name, err)
	}
	remoteSum, err := t.FileSHA256(ctx, BinaryPath)
	if err != nil {
		return res, fmt.Errorf("%s: check installed agent: %w", n.Name, err)
	}
	if remoteSum == localSum {
		if h, err := n.Health(ctx); err == nil && h.ConfigHash == wantHash {
			return res, nil
		}
	}

	// Stop an agent that runs an old binary or config.
	if err := stopRecorded(ctx, t); err != nil {
		return res, fmt.Errorf("%s: stop old agent: %w", n.Name, err)
	}
	if remoteSum != localSum {
		f, err := os.Open(n.AgentBinary)
		if err != nil {
			return res, fmt.Errorf("%s: open agent binary: %w", n.Name, err)
		}
		err = t.WriteFile(ctx, BinaryPath, f, 0o755)
		f.Close()
		if err != nil {
			return res, fmt.Errorf("%s: upload agent: %w", n.Name, err)
		}
		res.Uploaded = true
	}
	if err := t.WriteFile(ctx, ConfigPath, bytes.NewReader(cfgData), 0o600); err != nil {
		return res, fmt.Errorf("%s: write agent config: %w", n.Name, err)
	}
	home := t.Home()
	argv := []string{path.Join(home, BinaryPath),
		"--cluster", n.Config.Cluster, "--rank", strconv.Itoa(n.Config.Rank),
		"--config", path.Join(home, ConfigPath)}
	env := []string{api.MarkerEnv + "=" + n.Config.Marker, "HOME=" + home}
	pid, err := t.StartDetached(ctx, argv, env, LogPath)
	if err != nil {
		return res, fmt.Errorf("%s: start agent: %w", n.Name, err)
	}
	res.Started = true
	if err := t.WriteFile(ctx, PIDPath, strings.NewReader(strconv.Itoa(pid)), 0o600); err != nil {
		return res, fmt.Errorf("%s: record agent pid: %w", n.Name, err)
	}
	if err := waitHealthy(ctx, t, n, pid, wantHash); err != nil {
		return res, err
	}
	return res, nil
}

func waitHealthy(ctx context.Context, t Transport, n Node, pid int, wantHash string) error {
	timeout := n.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	var last error
	for {
		h, err := n.Health(ctx)
		if err == nil && h.ConfigHash == wantHash {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("agent answers with config %s, want %s", h.ConfigHash, wantHash)
		}
		last = err
		if serr := t.Signal(ctx, pid, 0); serr != nil {
			return fmt.Errorf("%s: agent exited right after start (%v); last log lines:\n%s", n.Name, last, tailLog(ctx, t))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: started agent but it was not healthy after %s (%v); last log lines:\n%s", n.Name, timeout, last, tailLog(ctx, t))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: wait for agent: %w", n.Name, ctx.Err())
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// stopRecorded stops the agent whose pid bootstrap recorded, if it runs.
func stopRecorded(ctx context.Context, t Transport) error {
	data, err := t.ReadFile(ctx, PIDPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return nil
	}
	if t.Signal(ctx, pid, 0) != nil {
		return nil
	}
	_ = t.Signal(ctx, pid, int(syscall.SIGTERM))
	for i := 0; i < 100; i++ {
		if t.Signal(ctx, pid, 0) != nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = t.Signal(ctx, pid, int(syscall.SIGKILL))
	return nil
}

func tailLog(ctx context.Context, t Transport) string {
	data, err := t.ReadFile(ctx, LogPath)
	if err != nil {
		return "  (no agent log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
