// Command sky-agent is the node runtime of a sky-coord cluster:
//
//	sky-agent --cluster NAME --rank N --config PATH
//	sky-agent version
//
// It reads its api.AgentConfig (written by bootstrap), serves the agent
// API on the config's bind address until SIGTERM, SIGINT or
// /v1/shutdown, then kills every job process it started. --cluster and
// --rank repeat the config so that ps shows which agent is which; they
// must match it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/sky-coord/sky-coord/agent"
	"github.com/sky-coord/sky-coord/api"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sky-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "__nsexec" {
		// Internal: a job process entering its private file mounts.
		return nsexec(args[1:])
	}
	if len(args) == 1 && args[0] == "version" {
		fmt.Fprintln(stdout, version)
		return nil
	}
	fs := flag.NewFlagSet("sky-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cluster := fs.String("cluster", "", "cluster name (must match the config)")
	rank := fs.Int("rank", -1, "node rank in the cluster's stable order (must match the config)")
	configPath := fs.String("config", "", "path of the agent config (JSON)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; usage: sky-agent --cluster NAME --rank N --config PATH | sky-agent version", fs.Arg(0))
	}
	if *configPath == "" {
		return errors.New("--config is required")
	}
	cfg, err := readConfig(*configPath)
	if err != nil {
		return err
	}
	if *cluster != cfg.Cluster {
		return fmt.Errorf("--cluster %q does not match cluster %q in %s", *cluster, cfg.Cluster, *configPath)
	}
	if *rank != cfg.Rank {
		return fmt.Errorf("--rank %d does not match rank %d in %s", *rank, cfg.Rank, *configPath)
	}
	// Every process the agent starts carries the marker; so does the
	// agent, whatever started it.
	if err := os.Setenv(api.MarkerEnv, cfg.Marker); err != nil {
		return fmt.Errorf("set %s: %w", api.MarkerEnv, err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	a, err := agent.New(cfg, agent.Options{Logger: logger, Version: version})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Bind, err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return a.Serve(ctx, ln)
}

func readConfig(path string) (api.AgentConfig, error) {
	var cfg api.AgentConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read agent config: %w", err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("parse agent config %s: %w", path, err)
	}
	return cfg, nil
}
