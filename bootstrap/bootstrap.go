package bootstrap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
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
	// AgentBinary is the local path of the sky-agent binary to install
	// when AgentBinaries is empty.
	AgentBinary string
	// AgentBinaries maps a GOARCH ("amd64", "arm64") to the local path of
	// the sky-agent built for it; the node's architecture picks one (see
	// Archer).
	AgentBinaries map[string]string
	Config        api.AgentConfig
	Health        Health
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
	binary, err := n.binaryFor(ctx, t)
	if err != nil {
		return res, err
	}
	localSum, err := fileSHA256(binary)
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
		if err := install(ctx, t, binary, localSum); err != nil {
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
	if err := waitHealthy(ctx, t, n, pid, wantHash, res.Uploaded); err != nil {
		return res, err
	}
	return res, nil
}

func waitHealthy(ctx context.Context, t Transport, n Node, pid int, wantHash string, uploaded bool) error {
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
			did := "started agent"
			if uploaded {
				did = "uploaded agent"
			}
			return fmt.Errorf("%s: %s but it was not healthy after %s (%v); last log lines:\n%s", n.Name, did, timeout, last, tailLog(ctx, t))
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

// binaryFor picks the agent binary for the node's architecture.
func (n Node) binaryFor(ctx context.Context, t Transport) (string, error) {
	if len(n.AgentBinaries) == 0 {
		if n.AgentBinary == "" {
			return "", fmt.Errorf("%s: no agent binary given", n.Name)
		}
		return n.AgentBinary, nil
	}
	arch := runtime.GOARCH
	if a, ok := t.(Archer); ok {
		var err error
		if arch, err = a.Arch(ctx); err != nil {
			return "", fmt.Errorf("%s: read the node's architecture: %w", n.Name, err)
		}
	}
	if p, ok := n.AgentBinaries[arch]; ok {
		return p, nil
	}
	have := make([]string, 0, len(n.AgentBinaries))
	for a := range n.AgentBinaries {
		have = append(have, a)
	}
	sort.Strings(have)
	return "", fmt.Errorf("%s: the node's architecture is %s and there is no sky-agent built for it (have: %s); build one with GOARCH=%s CGO_ENABLED=0 go build ./cmd/sky-agent",
		n.Name, arch, strings.Join(have, ", "), arch)
}

// install puts the local file p, whose sha256 is sum, at BinaryPath:
// gzip-compressed where the transport takes that.
func install(ctx context.Context, t Transport, p, sum string) error {
	if cw, ok := t.(CompressedWriter); ok {
		gz, err := compressedFile(p, sum)
		if err != nil {
			return err
		}
		return cw.WriteFileGzip(ctx, BinaryPath, bytes.NewReader(gz), 0o755, sum)
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("open agent binary: %w", err)
	}
	defer f.Close()
	return t.WriteFile(ctx, BinaryPath, f, 0o755)
}
