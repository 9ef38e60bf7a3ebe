package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/bootstrap"
	"github.com/sky-coord/sky-coord/testenv/hosts"
)

// bootstrapBench times agent bootstrap over SSH to fresh machines (issue
// 5, goal G9: ≤ 1.5 s for 8 hosts) beside the cost of one OpenSSH login
// to each of the same hosts.
type bootstrapBench struct {
	agent   string // the sky-agent binary to install
	hosts   int
	trials  int
	verbose bool
}

// bootTrial is one trial on its own fresh hosts.
type bootTrial struct {
	ref           time.Duration // n × `ssh host true` in parallel
	first, second time.Duration
	connect       time.Duration // the first run's slowest SSH connect
	uploaded      int           // hosts the first run uploaded to and started
	secondDid     int           // hosts the second run uploaded to or started (want 0)
}

const bootstrapGoal = 1500 * time.Millisecond

func (b *bootstrapBench) run(ctx context.Context) string {
	var out strings.Builder
	fmt.Fprintf(&out, "## Bootstrap of %d fresh hosts\n\n", b.hosts)
	sshBin, sshErr := exec.LookPath("ssh")
	sshVersion := "OpenSSH client not installed: no reference measured"
	if sshErr == nil {
		v, _ := exec.Command(sshBin, "-V").CombinedOutput()
		sshVersion = strings.TrimSpace(strings.SplitN(string(v), ",", 2)[0])
	}
	info, err := os.Stat(b.agent)
	if err != nil {
		fmt.Fprintf(&out, "**Failed**: agent binary: %v (run `make build` first).\n\n", err)
		markFailed()
		return out.String()
	}

	var trials []bootTrial
	for i := 0; i < b.trials; i++ {
		if ctx.Err() != nil {
			fmt.Fprintf(&out, "Interrupted.\n\n")
			return out.String()
		}
		var tr bootTrial
		skip, err := withTB(fmt.Sprintf("bootstrap trial %d", i+1), b.verbose, func(t *tb) error {
			hs := hosts.New(t, b.hosts)
			nodes, err := b.nodes(hs)
			if err != nil {
				return err
			}
			// Runs before the hosts are removed (cleanups run newest
			// first); removing a host also kills what runs in it.
			t.Cleanup(func() { stopAgents(hs, t) })
			if sshErr == nil {
				if tr.ref, err = sshTrue(ctx, sshBin, hs); err != nil {
					return err
				}
			}
			res, took, connect, err := ensureAll(ctx, hs, nodes)
			if err != nil {
				return fmt.Errorf("first bootstrap: %w", err)
			}
			tr.first, tr.connect = took, connect
			for _, r := range res {
				if r.Uploaded && r.Started {
					tr.uploaded++
				}
			}
			res, took, _, err = ensureAll(ctx, hs, nodes)
			if err != nil {
				return fmt.Errorf("second bootstrap: %w", err)
			}
			tr.second = took
			for _, r := range res {
				if r.Uploaded || r.Started {
					tr.secondDid++
				}
			}
			return nil
		})
		if skip != "" {
			fmt.Fprintf(&out, "Skipped: %s.\n\n", skip)
			return out.String()
		}
		if err != nil {
			fmt.Fprintf(&out, "**Failed** in trial %d:\n\n```\n%v\n```\n\n", i+1, err)
			markFailed()
			return out.String()
		}
		trials = append(trials, tr)
	}

	var ref, first, second, connect []time.Duration
	uploaded, secondDid := 0, 0
	for _, tr := range trials {
		ref = append(ref, tr.ref)
		first = append(first, tr.first)
		second = append(second, tr.second)
		connect = append(connect, tr.connect)
		uploaded += tr.uploaded
		secondDid += tr.secondDid
	}
	fmt.Fprintf(&out, "- **Hosts**: %d trials, each on %d fresh hosts made by `testenv/hosts`: a network namespace on a bridge with its own address, "+
		"Linux user, home and OpenSSH sshd.\n", len(trials), b.hosts)
	fmt.Fprintf(&out, "- **sky-coord**: `bootstrap.DialSSH` + `bootstrap.Ensure` on the %d hosts in parallel, as the coordinator does it: the %.1f MB `bin/sky-agent` "+
		"uploaded gzip-compressed over SFTP, the agent config the coordinator writes (bearer token, gossip with all %d peers), the agent started detached; "+
		"done when every agent has answered `GET /v1/health` through a channel forwarded over its SSH connection. Bootstrap hashes and compresses the agent binary "+
		"once per process: trial 1 includes that, the worst case (a coordinator prepares its agents when it starts, so only a launch in its first moment pays it); later trials reuse it, as launches of a running coordinator do. "+
		"The second bootstrap finds every agent healthy with the same binary and config and changes nothing.\n",
		b.hosts, float64(info.Size())/1e6, b.hosts)
	fmt.Fprintf(&out, "- **Reference**, same hosts and run, just before ours: `ssh -i KEY -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null user@host true` "+
		"to the %d hosts in parallel (%s).\n", b.hosts, sshVersion)
	fmt.Fprintf(&out, "- **Goal**: all %d bootstrapped and healthy within %.1f s (G9).\n", b.hosts, bootstrapGoal.Seconds())
	fmt.Fprintf(&out, "- **Machine**: %s.\n\n", machine())
	fmt.Fprintf(&out, "| measure | sky-coord | reference: %d × `ssh host true` in parallel | ratio to reference | goal | ratio to goal |\n|---|---|---|---|---|---|\n", b.hosts)
	row := func(name string, ours []time.Duration, refs []time.Duration, goal time.Duration) {
		refCell, ratio, goalCell, goalRatio := "not measured: no `ssh` client", "–", "", ""
		if sshErr == nil {
			refCell = ms(median(refs))
			ratio = fmt.Sprintf("%.2f×", float64(median(ours))/float64(median(refs)))
		}
		if goal > 0 {
			goalCell = fmt.Sprintf("≤ %.1f s", goal.Seconds())
			goalRatio = fmt.Sprintf("%.3f", median(ours).Seconds()/goal.Seconds())
		}
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %s | %s |\n", name, ms(median(ours)), refCell, ratio, goalCell, goalRatio)
	}
	row(fmt.Sprintf("first bootstrap, all %d installed, started, healthy: trial 1 (agent compressed in the run)", b.hosts), first[:1], ref[:1], bootstrapGoal)
	if len(trials) > 1 {
		row(fmt.Sprintf("first bootstrap, all %d: median of trials 2–%d (compressed agent reused)", b.hosts, len(trials)), first[1:], ref[1:], bootstrapGoal)
	}
	row(fmt.Sprintf("second bootstrap (no-op), all %d found healthy: median of %d", b.hosts, len(trials)), second, ref, 0)
	fmt.Fprintf(&out, "\nEach trial in order — first bootstrap: %s (of which the slowest SSH connect and authentication: %s); second: %s",
		list(first, ms), list(connect, ms), list(second, ms))
	if sshErr == nil {
		fmt.Fprintf(&out, "; `ssh host true` ×%d: %s", b.hosts, list(ref, ms))
	}
	fmt.Fprintf(&out, ". Agents uploaded and started by the first runs: %d of %d; hosts the second runs changed: %d (want 0).\n\n",
		uploaded, b.hosts*len(trials), secondDid)
	fmt.Fprintf(&out, "Published anchor (not re-measured): SkyPilot's runtime setup takes 30–40%% of a ~3 min launch, about a minute.\n\n")
	return out.String()
}

// nodes is what Ensure needs for each host: the config the coordinator
// writes (coordinator.bootstrapNode) for an 8-node cluster on the hosts'
// addresses. Nothing listens at the coordinator URL: agents only call it
// about jobs, and this runs none.
func (b *bootstrapBench) nodes(hs []*hosts.Host) ([]bootstrap.Node, error) {
	token, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	var peers []string
	for _, h := range hs {
		peers = append(peers, net.JoinHostPort(h.Addr, strconv.Itoa(api.GossipPort)))
	}
	nodes := make([]bootstrap.Node, len(hs))
	for i, h := range hs {
		nodes[i] = bootstrap.Node{
			Name:        fmt.Sprintf("node %d (%s)", i, h.Addr),
			AgentBinary: b.agent,
			Config: api.AgentConfig{
				Cluster: "bench-bootstrap", Rank: i, NodeID: h.Name, IP: h.Addr,
				Bind: net.JoinHostPort(h.Addr, strconv.Itoa(api.AgentPort)),
				Home: h.Home, Marker: h.Home,
				CoordinatorURL: "http://" + net.JoinHostPort(hosts.GatewayAddr, "9"),
				Token:          token,
				GossipBind:     peers[i], GossipKey: base64.StdEncoding.EncodeToString(key), Peers: peers,
			},
			Timeout: 30 * time.Second,
		}
	}
	return nodes, nil
}

func sshConfig(h *hosts.Host, name string) bootstrap.SSHConfig {
	return bootstrap.SSHConfig{
		Host: h.Addr, Port: h.Port, User: h.User, IdentityFile: h.IdentityFile,
		HostKey: bootstrap.HostKeyPolicy{Known: h.HostKey}, Name: name,
	}
}

// ensureAll bootstraps every host in parallel, each over its own SSH
// connection, and returns when all are healthy, with the time that took
// and the slowest connect.
func ensureAll(ctx context.Context, hs []*hosts.Host, nodes []bootstrap.Node) ([]bootstrap.Result, time.Duration, time.Duration, error) {
	res := make([]bootstrap.Result, len(hs))
	connect := make([]time.Duration, len(hs))
	errs := make([]error, len(hs))
	var wg sync.WaitGroup
	start := time.Now()
	for i, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], connect[i], errs[i] = ensureOne(ctx, h, nodes[i])
		}()
	}
	wg.Wait()
	return res, time.Since(start), percentile(connect, 1), errors.Join(errs...)
}

func ensureOne(ctx context.Context, h *hosts.Host, n bootstrap.Node) (bootstrap.Result, time.Duration, error) {
	start := time.Now()
	s, err := bootstrap.DialSSH(ctx, sshConfig(h, n.Name))
	connect := time.Since(start)
	if err != nil {
		return bootstrap.Result{}, connect, err
	}
	defer s.Close()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: s.DialContext}}
	defer client.CloseIdleConnections()
	n.Health = func(ctx context.Context) (*api.AgentHealth, error) {
		return agentHealth(ctx, client, n.Config.Bind, n.Config.Token)
	}
	res, err := bootstrap.Ensure(ctx, s, n)
	return res, connect, err
}

// agentHealth is the coordinator's health call: GET /v1/health with the
// cluster's bearer token, 2 s at most.
func agentHealth(ctx context.Context, c *http.Client, addr, token string) (*api.AgentHealth, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/health", nil)
	if err != nil {
		return nil, err
	}
	api.SetToken(req, token)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("agent %s: health: %s: %s", addr, resp.Status, strings.TrimSpace(string(msg)))
	}
	var h api.AgentHealth
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("agent %s: health: %w", addr, err)
	}
	return &h, nil
}

// sshTrue runs `ssh user@host true` with OpenSSH's client to every host
// in parallel and returns the wall time until all have exited.
func sshTrue(ctx context.Context, sshBin string, hs []*hosts.Host) (time.Duration, error) {
	cmds := make([]*exec.Cmd, len(hs))
	outs := make([]strings.Builder, len(hs))
	for i, h := range hs {
		cmds[i] = exec.CommandContext(ctx, sshBin, "-F", "/dev/null", "-i", h.IdentityFile,
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
			"-p", strconv.Itoa(h.Port), h.User+"@"+h.Addr, "true")
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
	}
	procs := make([]*tracked, 0, len(cmds))
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	start := time.Now()
	for _, c := range cmds {
		p, err := startTracked(c)
		if err != nil {
			return 0, fmt.Errorf("ssh: %w", err)
		}
		procs = append(procs, p)
	}
	var errs []error
	for i, p := range procs {
		if err := p.wait(); err != nil {
			errs = append(errs, fmt.Errorf("ssh %s true: %w: %s", hs[i].Addr, err, strings.TrimSpace(outs[i].String())))
		}
	}
	return time.Since(start), errors.Join(errs...)
}

// stopAgents stops the agents bootstrap started (best effort: removing a
// host kills whatever is left in it).
func stopAgents(hs []*hosts.Host, t *tb) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := bootstrap.DialSSH(ctx, sshConfig(h, h.Name))
			if err != nil {
				t.Logf("stop agent on %s: %v", h.Name, err)
				return
			}
			defer s.Close()
			if err := bootstrap.StopAgent(ctx, s); err != nil {
				t.Logf("stop agent on %s: %v", h.Name, err)
			}
		}()
	}
	wg.Wait()
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
