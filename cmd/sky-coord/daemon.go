package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sky-coord/sky-coord/client"
	"github.com/sky-coord/sky-coord/cmd/internal/skyhome"
	"github.com/sky-coord/sky-coord/procscan"
)

// runningServer returns a client of the embedded coordinator if one answers.
func runningServer(ctx context.Context, home string) (*client.Client, *skyhome.ServerInfo) {
	data, err := os.ReadFile(filepath.Join(home, "server.json"))
	if err != nil {
		return nil, nil
	}
	var info skyhome.ServerInfo
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
	if _, err := skyhome.ReadOrCreateToken(filepath.Join(home, "token")); err != nil {
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
			return execServer([]string{"--data-dir", dataDir, "--bind", bind, "--token-file", tokenFile,
				"--addr-file", addrFile, "--local-root", localRoot, "--agent-binary", agentBin,
				"--raft-bind", rep.raftBind, "--join", strings.Join(rep.join, ","),
				"--bootstrap-expect", strconv.Itoa(rep.bootstrapExpect)})
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

// processAlive reports whether pid runs. An exited process that its
// parent has not reaped yet (a zombie) does not count.
func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil && !procscan.Zombie(pid)
}

// skyHome is $SKY_COORD_HOME, default ~/.sky-coord.
func skyHome() string { return skyhome.Dir() }

// execServer replaces this process with the coordinator's binary,
// sky-coord-server (SKY_COORD_SERVER_BIN, else the one beside this
// binary), which takes the flags `server` parsed. It lives apart so that
// the CLI does not link, and start by initializing, the coordinator and
// the object-store SDKs it uses: every command starts about 30 ms sooner.
// The process keeps its pid, which the CLI that started it waits on.
func execServer(args []string) error {
	bin := os.Getenv("SKY_COORD_SERVER_BIN")
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		bin = filepath.Join(filepath.Dir(self), "sky-coord-server")
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("the sky-coord-server binary is not beside %s; build it with `make build` or set SKY_COORD_SERVER_BIN", self)
		}
	}
	err := syscall.Exec(bin, append([]string{bin}, args...), os.Environ())
	return fmt.Errorf("run %s: %w", bin, err)
}
