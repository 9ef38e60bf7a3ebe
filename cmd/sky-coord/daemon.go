package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sky-coord/sky-coord/client"
	"github.com/sky-coord/sky-coord/coordinator"
	"github.com/sky-coord/sky-coord/procscan"
	"github.com/sky-coord/sky-coord/providers"
	"github.com/sky-coord/sky-coord/providers/local"
	sshprov "github.com/sky-coord/sky-coord/providers/ssh"
)

// skyHome is $SKY_COORD_HOME, default ~/.sky-coord.
func skyHome() string {
	if h := os.Getenv("SKY_COORD_HOME"); h != "" {
		abs, err := filepath.Abs(h)
		if err == nil {
			return abs
		}
		return h
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".sky-coord"
	}
	return filepath.Join(home, ".sky-coord")
}

// serverInfo is what a running embedded coordinator writes for the CLI.
type serverInfo struct {
	Addr string `json:"addr"`
	PID  int    `json:"pid"`
}

// readOrCreateToken returns the API token stored in path, creating it
// (mode 0600) when missing.
func readOrCreateToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(data))) > 0 {
		return strings.TrimSpace(string(data)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read API token %s: %w", path, err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return readOrCreateToken(path) // another process won the race
	}
	if err != nil {
		return "", fmt.Errorf("create API token %s: %w", path, err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", err
	}
	return tok, f.Close()
}

// runningServer returns a client of the embedded coordinator if one answers.
func runningServer(ctx context.Context, home string) (*client.Client, *serverInfo) {
	data, err := os.ReadFile(filepath.Join(home, "server.json"))
	if err != nil {
		return nil, nil
	}
	var info serverInfo
	if json.Unmarshal(data, &info) != nil || info.Addr == "" {
		return nil, nil
	}
	tok, err := os.ReadFile(filepath.Join(home, "token"))
	if err != nil {
		return nil, nil
	}
	c := client.New(info.Addr, strings.TrimSpace(string(tok)))
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := c.Health(hctx); err != nil {
		return nil, nil
	}
	return c, &info
}

// connect returns a client of the coordinator, starting the embedded one
// in the background on first use.
func connect(ctx context.Context) (*client.Client, error) {
	if addr := os.Getenv("SKY_COORD_ADDR"); addr != "" {
		tok := os.Getenv("SKY_COORD_TOKEN")
		if tok == "" {
			data, err := os.ReadFile(filepath.Join(skyHome(), "token"))
			if err != nil {
				return nil, fmt.Errorf("SKY_COORD_ADDR is set but no token: set SKY_COORD_TOKEN or write it to %s", filepath.Join(skyHome(), "token"))
			}
			tok = strings.TrimSpace(string(data))
		}
		// Any replica serves: take the first that answers.
		var lastErr error
		for _, a := range strings.Split(addr, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			c := client.New(a, tok)
			hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := c.Health(hctx)
			cancel()
			if err == nil {
				return c, nil
			}
			lastErr = err
		}
		return nil, fmt.Errorf("no coordinator in SKY_COORD_ADDR=%s answers: %v", addr, lastErr)
	}
	home := skyHome()
	if c, _ := runningServer(ctx, home); c != nil {
		return c, nil
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", home, err)
	}
	lock, err := os.OpenFile(filepath.Join(home, "server.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if c, _ := runningServer(ctx, home); c != nil {
		return c, nil // started by another CLI while we waited for the lock
	}
	if _, err := readOrCreateToken(filepath.Join(home, "token")); err != nil {
		return nil, err
	}
	_ = os.Remove(filepath.Join(home, "server.json"))
	logPath := filepath.Join(home, "server.log")
	cmd, err := startDetached(logPath, "", "server", "--embedded",
		"--data-dir", filepath.Join(home, "server"), "--bind", "127.0.0.1:0",
		"--token-file", filepath.Join(home, "token"), "--addr-file", filepath.Join(home, "server.json"),
		"--local-root", filepath.Join(home, "local"))
	if err != nil {
		return nil, fmt.Errorf("start the coordinator: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, _ := runningServer(ctx, home); c != nil {
			return c, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("the coordinator exited at start (%v); see %s", err, logPath)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the coordinator did not answer within 15 s; see %s", logPath)
		}
	}
}

// startDetached starts this binary with args in a session of its own, so
// that it outlives the command, with its output appended to logPath
// (created 0600) and dir as its working directory ("" keeps ours).
func startDetached(logPath, dir string, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(self, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// replication are the flags that make `server` one replica of several.
type replication struct {
	raftBind        string
	join            []string
	bootstrapExpect int
}

func serverCmd() *cobra.Command {
	var dataDir, bind, tokenFile, addrFile, localRoot, agentBin string
	var embedded bool
	var rep replication
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a coordinator (the CLI starts an embedded one on first use)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(rep.join) > 0 && rep.bootstrapExpect == 0 {
				// Without --bootstrap-expect, the replicas named (this one
				// included) form the cluster once they have all met.
				set := map[string]bool{bind: true}
				for _, j := range rep.join {
					set[strings.TrimSpace(j)] = true
				}
				rep.bootstrapExpect = len(set)
			}
			if len(rep.join) > 0 || rep.bootstrapExpect > 0 || rep.raftBind != "" {
				if rep.raftBind == "" {
					host, port, err := net.SplitHostPort(bind)
					p, perr := strconv.Atoi(port)
					if err != nil || perr != nil || p == 0 {
						return &exitError{code: 2, msg: fmt.Sprintf("--bind %q: a replica needs a fixed HOST:PORT (its ID and the address the others reach)", bind)}
					}
					rep.raftBind = net.JoinHostPort(host, strconv.Itoa(p+1))
				}
			}
			return runServer(cmd.Context(), dataDir, bind, tokenFile, addrFile, localRoot, agentBin, rep)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", filepath.Join(skyHome(), "server"), "directory for the Raft log, snapshots and uploads")
	f.StringVar(&bind, "bind", "127.0.0.1:46580", "HOST:PORT the API listens on")
	f.StringVar(&tokenFile, "token-file", filepath.Join(skyHome(), "token"), "API token file (created with mode 0600 when missing)")
	f.StringVar(&addrFile, "addr-file", "", "write the listen address here once serving")
	f.StringVar(&localRoot, "local-root", filepath.Join(skyHome(), "local"), "where the local provider keeps its nodes")
	f.StringVar(&agentBin, "agent-binary", "", "sky-agent binary to install on nodes (default: beside this binary)")
	f.StringSliceVar(&rep.join, "join", nil, "API addresses (HOST:PORT) of the other replicas, to form or join a replicated coordinator")
	f.IntVar(&rep.bootstrapExpect, "bootstrap-expect", 0, "how many replicas form a new cluster (e.g. 3); they wait until all have met")
	f.StringVar(&rep.raftBind, "raft-bind", "", "HOST:PORT for Raft traffic between replicas (default: the API port + 1)")
	f.BoolVar(&embedded, "embedded", false, "started by the CLI")
	_ = f.MarkHidden("embedded")
	var membersOut string
	members := &cobra.Command{
		Use:   "members",
		Short: "List the coordinator's replicas: id, address, state, leader",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			ms, err := c.Members(cmd.Context())
			if err != nil {
				return err
			}
			if membersOut == "json" {
				return printJSON(ms)
			}
			var rows [][]string
			for _, m := range ms {
				leader := ""
				if m.Leader {
					leader = "✔"
				}
				rows = append(rows, []string{m.ID, m.Address, m.State, leader})
			}
			table(os.Stdout, []string{"ID", "ADDRESS", "STATE", "LEADER"}, rows)
			return nil
		},
	}
	members.Flags().StringVarP(&membersOut, "output", "o", "table", "output format: table or json")
	cmd.AddCommand(members)
	cmd.AddCommand(&cobra.Command{
		Use:   "stop",
		Short: "Stop the embedded coordinator and the file watcher (clusters keep running)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stopWatcher(cmd.Context()) {
				fmt.Println("File watcher stopped.")
			}
			c, info := runningServer(cmd.Context(), skyHome())
			if c == nil {
				fmt.Println("No coordinator is running.")
				return nil
			}
			if err := c.Shutdown(cmd.Context()); err != nil {
				return err
			}
			for i := 0; i < 500 && processAlive(info.PID); i++ {
				time.Sleep(10 * time.Millisecond)
			}
			fmt.Printf("Coordinator (pid %d) stopped.\n", info.PID)
			return nil
		},
	})
	return cmd
}

func agentBinary(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if p := os.Getenv("SKY_COORD_AGENT_BIN"); p != "" {
		return p, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), "sky-agent")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the sky-agent binary is not beside %s; build it with `make build` or set SKY_COORD_AGENT_BIN", self)
	}
	return p, nil
}

func runServer(ctx context.Context, dataDir, bind, tokenFile, addrFile, localRoot, agentFlag string, rep replication) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	tok, err := readOrCreateToken(tokenFile)
	if err != nil {
		return err
	}
	agentBin, err := agentBinary(agentFlag)
	if err != nil {
		return err
	}
	sshProv := sshprov.New(skyHome())
	defer sshProv.Close()
	srv, err := coordinator.New(coordinator.Config{
		DataDir:         dataDir,
		Token:           tok,
		Providers:       map[string]providers.Provider{local.Name: local.New(localRoot), sshprov.Name: sshProv},
		AgentBinary:     agentBin,
		AgentBinaries:   agentBinaries(agentBin),
		MountBinaries:   mountBinaries(agentBin),
		Version:         version,
		Logger:          logger,
		CatalogHome:     skyHome(),
		RetryGap:        retryGap(),
		FaultPause:      faultPause(),
		RaftBind:        rep.raftBind,
		ServerID:        serverID(rep, bind),
		Join:            rep.join,
		BootstrapExpect: rep.bootstrapExpect,
		ClusterKey:      clusterKey(rep, tok),
	})
	if err != nil {
		return err
	}
	sshProv.HostKeys, sshProv.AcceptHint = srv.HostKeys(), coordinator.AcceptHint
	if rep.raftBind == "" {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = srv.WaitLeader(wctx)
		cancel()
		if err != nil {
			return err
		}
	}
	l, err := listen(bind, filepath.Join(dataDir, "last-addr"))
	if err != nil {
		return err
	}
	if addrFile != "" {
		data, _ := json.Marshal(serverInfo{Addr: l.Addr().String(), PID: os.Getpid()})
		if err := os.WriteFile(addrFile+".tmp", data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(addrFile+".tmp", addrFile); err != nil {
			return err
		}
		defer os.Remove(addrFile)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger.Info("coordinator serving", "addr", l.Addr().String(), "data_dir", dataDir)
	return srv.Serve(ctx, l)
}

// listen binds the API. With port 0 it first tries the address the last
// run used, so agents started then (which report to that address) keep
// reaching the coordinator across restarts.
func listen(bind, lastAddrFile string) (net.Listener, error) {
	if strings.HasSuffix(bind, ":0") {
		if last, err := os.ReadFile(lastAddrFile); err == nil {
			if l, err := net.Listen("tcp", strings.TrimSpace(string(last))); err == nil {
				return l, nil
			}
		}
	}
	l, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", bind, err)
	}
	if err := os.MkdirAll(filepath.Dir(lastAddrFile), 0o700); err == nil {
		_ = os.WriteFile(lastAddrFile, []byte(l.Addr().String()), 0o600)
	}
	return l, nil
}

// processAlive reports whether pid runs. An exited process that its
// parent has not reaped yet (a zombie) does not count.
func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil && !procscan.Zombie(pid)
}

// retryGap is SKY_COORD_RETRY_GAP (a Go duration such as "2s"), the first
// wait between rounds of --retry-until-up; 0 means the default (30 s).
func retryGap() time.Duration {
	d, err := time.ParseDuration(os.Getenv("SKY_COORD_RETRY_GAP"))
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// agentBinaries finds the cross-built agents beside the native one
// (sky-agent-linux-amd64, sky-agent-linux-arm64), by GOARCH.
func agentBinaries(native string) map[string]string {
	out := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		p := filepath.Join(filepath.Dir(native), "sky-agent-linux-"+arch)
		if _, err := os.Stat(p); err == nil {
			out[arch] = p
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// mountBinaries finds sky-mount beside the agent: the cross-built ones by
// GOARCH, else the native one for this machine's architecture.
func mountBinaries(agent string) map[string]string {
	dir := filepath.Dir(agent)
	out := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		if p := filepath.Join(dir, "sky-mount-linux-"+arch); fileExists(p) {
			out[arch] = p
		}
	}
	if p := filepath.Join(dir, "sky-mount"); fileExists(p) && out[runtime.GOARCH] == "" {
		out[runtime.GOARCH] = p
	}
	return out
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func serverID(rep replication, bind string) string {
	if rep.raftBind == "" {
		return ""
	}
	return bind
}

func clusterKey(rep replication, token string) []byte {
	if rep.raftBind == "" {
		return nil
	}
	return []byte(token)
}

// faultPause reads SKY_COORD_FAULT_PAUSE ("provision=2s,bootstrap=2s"),
// a hook for fault tests: the leader waits at those steps.
func faultPause() map[string]time.Duration {
	v := os.Getenv("SKY_COORD_FAULT_PAUSE")
	if v == "" {
		return nil
	}
	out := map[string]time.Duration{}
	for _, kv := range strings.Split(v, ",") {
		k, d, ok := strings.Cut(kv, "=")
		if dur, err := time.ParseDuration(d); ok && err == nil {
			out[strings.TrimSpace(k)] = dur
		}
	}
	return out
}
