// Command sky-coord-server runs a coordinator: the Raft-replicated state,
// the API, the providers and the bootstrap of agents. Users start it as
// `sky-coord server` (or the CLI starts an embedded one on first use);
// the CLI parses the flags and hands over to this binary with exec, so
// that the CLI itself need not link the coordinator.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sky-coord/sky-coord/cmd/internal/skyhome"
	"github.com/sky-coord/sky-coord/coordinator"
	"github.com/sky-coord/sky-coord/providers"
	"github.com/sky-coord/sky-coord/providers/local"
	sshprov "github.com/sky-coord/sky-coord/providers/ssh"
)

// version is set at build time with -ldflags "-X main.version=..."; it
// must be the CLI's and the agents'.
var version = "dev"

// replication are the flags that make the coordinator one replica of
// several.
type replication struct {
	raftBind        string
	join            []string
	bootstrapExpect int
}

// main takes the flags of `sky-coord server`, which has checked them and
// filled in what they imply; see its help.
func main() {
	fs := flag.NewFlagSet("sky-coord-server", flag.ContinueOnError)
	dataDir := fs.String("data-dir", filepath.Join(skyhome.Dir(), "server"), "directory for the Raft log, snapshots and uploads")
	bind := fs.String("bind", "127.0.0.1:46580", "HOST:PORT the API listens on")
	tokenFile := fs.String("token-file", filepath.Join(skyhome.Dir(), "token"), "API token file (created with mode 0600 when missing)")
	addrFile := fs.String("addr-file", "", "write the listen address here once serving")
	localRoot := fs.String("local-root", filepath.Join(skyhome.Dir(), "local"), "where the local provider keeps its nodes")
	agentBin := fs.String("agent-binary", "", "sky-agent binary to install on nodes (default: beside this binary)")
	join := fs.String("join", "", "comma-separated API addresses of the other replicas")
	var rep replication
	fs.IntVar(&rep.bootstrapExpect, "bootstrap-expect", 0, "how many replicas form a new cluster")
	fs.StringVar(&rep.raftBind, "raft-bind", "", "HOST:PORT for Raft traffic between replicas")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "sky-coord-server: unexpected arguments %q; run it as `sky-coord server`\n", fs.Args())
		os.Exit(2)
	}
	for _, j := range strings.Split(*join, ",") {
		if j = strings.TrimSpace(j); j != "" {
			rep.join = append(rep.join, j)
		}
	}
	if err := runServer(context.Background(), *dataDir, *bind, *tokenFile, *addrFile, *localRoot, *agentBin, rep); err != nil {
		fmt.Fprintln(os.Stderr, "sky-coord server:", err)
		os.Exit(1)
	}
}

// agentBinary is the agent to install on nodes: the flag's, else
// SKY_COORD_AGENT_BIN, else the one beside this binary.
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

// runServer serves the coordinator on bind until SIGINT or SIGTERM.
func runServer(ctx context.Context, dataDir, bind, tokenFile, addrFile, localRoot, agentFlag string, rep replication) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	tok, err := skyhome.ReadOrCreateToken(tokenFile)
	if err != nil {
		return err
	}
	agentBin, err := agentBinary(agentFlag)
	if err != nil {
		return err
	}
	sshProv := sshprov.New(skyhome.Dir())
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
		CatalogHome:     skyhome.Dir(),
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
		data, _ := json.Marshal(skyhome.ServerInfo{Addr: l.Addr().String(), PID: os.Getpid()})
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
