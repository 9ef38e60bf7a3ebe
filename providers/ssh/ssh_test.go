package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/bootstrap"
	"github.com/sky-coord/sky-coord/providers"
	"github.com/sky-coord/sky-coord/providers/providertest"
	"github.com/sky-coord/sky-coord/testenv/hosts"
)

// newProvider returns a provider whose one pool, "test-pool", is hs.
func newProvider(t *testing.T, hs []*hosts.Host) *Provider {
	t.Helper()
	home := t.TempDir()
	writePools(t, home, map[string][]*hosts.Host{"test-pool": hs})
	p := New(home)
	p.ConnectTimeout = 2 * time.Second
	t.Cleanup(func() { p.Close() })
	return p
}

func writePools(t *testing.T, home string, pools map[string][]*hosts.Host) {
	t.Helper()
	var b strings.Builder
	for name, hs := range pools {
		fmt.Fprintf(&b, "%s:\n  hosts:\n", name)
		for _, h := range hs {
			fmt.Fprintf(&b, "    - ip: %s\n      port: %d\n      user: %s\n      identity_file: %s\n", h.Addr, h.Port, h.User, h.IdentityFile)
		}
	}
	if err := os.WriteFile(filepath.Join(home, PoolsFileName), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestContractInProcessHosts(t *testing.T) {
	providertest.Run(t, newProvider(t, hosts.NewInProcess(t, 4)))
}

// TestContractNamespaceHosts runs the contract against real sshd hosts,
// each its own user (root only).
func TestContractNamespaceHosts(t *testing.T) {
	providertest.Run(t, newProvider(t, hosts.New(t, 4)))
}

func TestLaunchTakesFreeHostsOnly(t *testing.T) {
	hs := hosts.NewInProcess(t, 3)
	p := newProvider(t, hs)
	ctx := context.Background()
	a, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "a", NumNodes: 2, Region: "test-pool"})
	if err != nil {
		t.Fatal(err)
	}
	if a[0].IP != hs[0].Addr || a[1].IP != hs[1].Addr || a[0].Region != "test-pool" {
		t.Errorf("cluster a got %+v, want the pool's first two hosts", a)
	}
	_, err = p.Launch(ctx, providers.LaunchRequest{Cluster: "b", NumNodes: 2, Region: "test-pool"})
	if !errors.Is(err, providers.ErrNoCapacity) {
		t.Fatalf("launch beyond the pool: %v, want ErrNoCapacity", err)
	}
	for _, want := range []string{`has 1 free of 3 hosts and cluster "b" needs 2 more`,
		hs[0].HostPort() + ` (user ` + hs[0].User + `): cluster "a" node 0`,
		hs[2].HostPort() + ` (user ` + hs[2].User + `): free`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if b, _ := p.Describe(ctx, "b"); len(b) != 0 {
		t.Errorf("a failed launch took hosts: %+v", b)
	}

	// The records are durable: another provider of the same home sees them.
	again := New(p.Home)
	desc, err := again.Describe(ctx, "a")
	if err != nil || len(desc) != 2 || desc[0].ID != a[0].ID || desc[1].ID != a[1].ID {
		t.Errorf("another provider describes %+v, %v; want %+v", desc, err, a)
	}

	_, err = p.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 1, Region: "nope"})
	if !errors.Is(err, providers.ErrInvalidRequest) || !strings.Contains(err.Error(), `no SSH node pool "nope"`) || !strings.Contains(err.Error(), "test-pool") {
		t.Errorf("unknown pool: %v", err)
	}
	_, err = p.Launch(ctx, providers.LaunchRequest{Cluster: "a", NumNodes: 2, Region: "other"})
	if !errors.Is(err, providers.ErrInvalidRequest) {
		t.Errorf("relaunch of cluster a on another pool: %v", err)
	}
	empty := New(t.TempDir())
	_, err = empty.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 1})
	if !errors.Is(err, providers.ErrInvalidRequest) || !strings.Contains(err.Error(), PoolsFileName) {
		t.Errorf("launch without pools: %v", err)
	}
}

func TestPoolMustBeNamedWhenThereAreSeveral(t *testing.T) {
	hs := hosts.NewInProcess(t, 2)
	home := t.TempDir()
	writePools(t, home, map[string][]*hosts.Host{"one": hs[:1], "two": hs[1:]})
	p := New(home)
	ctx := context.Background()
	if _, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 1}); !errors.Is(err, providers.ErrInvalidRequest) || !strings.Contains(err.Error(), "one, two") {
		t.Errorf("launch without a pool name: %v", err)
	}
	in, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 1, Region: "two"})
	if err != nil || in[0].IP != hs[1].Addr {
		t.Errorf("launch on pool two = %+v, %v", in, err)
	}
}

// pidHealth is healthy while the process in the node's pid file runs.
func pidHealth(home string, cfg api.AgentConfig) bootstrap.Health {
	return func(context.Context) (*api.AgentHealth, error) {
		data, err := os.ReadFile(filepath.Join(home, bootstrap.PIDPath))
		if err != nil {
			return nil, err
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		if pid <= 0 || syscall.Kill(pid, 0) != nil || zombie(pid) {
			return nil, errors.New("connection refused")
		}
		return &api.AgentHealth{ConfigHash: cfg.Hash(), PID: pid}, nil
	}
}

func zombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// ensureAgent bootstraps a stand-in agent on an instance and returns its
// pid.
func ensureAgent(t *testing.T, p *Provider, in providers.Instance, h *hosts.Host) int {
	t.Helper()
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "sky-agent")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr, err := p.Transport(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cfg := api.AgentConfig{Cluster: "c", Rank: in.Index, Home: tr.Home(), Marker: tr.Home()}
	if _, err := bootstrap.Ensure(ctx, tr, bootstrap.Node{Name: in.IP, AgentBinary: bin, Config: cfg,
		Health: pidHealth(h.Home, cfg), Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(h.Home, bootstrap.PIDPath))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

func TestStopAndTerminateCleanTheMachines(t *testing.T) {
	hs := hosts.NewInProcess(t, 2)
	p := newProvider(t, hs)
	ctx := context.Background()
	in, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	pid := ensureAgent(t, p, in[0], hs[0])
	if err := os.MkdirAll(filepath.Join(hs[0].Home, "sky_workdir"), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := p.Stop(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(pid, 0) == nil && !zombie(pid) {
		t.Errorf("agent %d runs after Stop", pid)
	}
	if _, err := os.Stat(filepath.Join(hs[0].Home, bootstrap.BinaryPath)); err != nil {
		t.Errorf("Stop removed the agent: %v", err)
	}

	pid = ensureAgent(t, p, in[0], hs[0])
	if err := p.Terminate(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(pid, 0) == nil && !zombie(pid) {
		t.Errorf("agent %d runs after Terminate", pid)
	}
	for _, d := range []string{bootstrap.Dir, "sky_workdir"} {
		if _, err := os.Stat(filepath.Join(hs[0].Home, d)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("~/%s is left after Terminate (%v)", d, err)
		}
	}
	if _, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "d", NumNodes: 2}); err != nil {
		t.Errorf("the released machines cannot be launched again: %v", err)
	}
}

func TestTerminateReleasesADeadMachine(t *testing.T) {
	hs := hosts.NewInProcess(t, 2)
	p := newProvider(t, hs)
	ctx := context.Background()
	if _, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 2}); err != nil {
		t.Fatal(err)
	}
	hs[1].Kill(t)
	if err := p.Terminate(ctx, "c"); err != nil {
		t.Fatalf("terminate with a dead machine: %v", err)
	}
	if left, _ := p.Describe(ctx, "c"); len(left) != 0 {
		t.Errorf("after terminate: %+v", left)
	}
}

func TestHostKeysArePinnedOnFirstUse(t *testing.T) {
	hs := hosts.NewInProcess(t, 1)
	p := newProvider(t, hs)
	p.AcceptHint = "run `sky-coord ssh-keys forget {host}`"
	ctx := context.Background()
	in, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := p.Transport(ctx, in[0])
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if key, _ := p.HostKeys.HostKey(ctx, hs[0].HostPort()); key != hs[0].HostKey {
		t.Errorf("pinned key = %q, want %q", key, hs[0].HostKey)
	}
	st, err := os.Stat(filepath.Join(p.Home, "ssh", "known_hosts.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("host key file mode = %v (%v), want 0600", st.Mode().Perm(), err)
	}

	hs[0].RotateHostKey(t)
	_, err = p.Transport(ctx, in[0])
	if !errors.Is(err, bootstrap.ErrHostKeyChanged) || !strings.Contains(err.Error(), "run `sky-coord ssh-keys forget "+hs[0].HostPort()+"`") {
		t.Fatalf("transport after the host key changed: %v", err)
	}
	// Terminate cannot clean a machine it does not trust: it keeps it.
	if err := p.Terminate(ctx, "c"); err == nil || !strings.Contains(err.Error(), "host key") {
		t.Errorf("terminate with a changed host key: %v", err)
	}

	if err := p.HostKeys.(*FileHostKeys).Forget(hs[0].HostPort()); err != nil {
		t.Fatal(err)
	}
	tr, err = p.Transport(ctx, in[0])
	if err != nil {
		t.Fatalf("transport after forgetting the old key: %v", err)
	}
	tr.Close()
	if key, _ := p.HostKeys.HostKey(ctx, hs[0].HostPort()); key != hs[0].HostKey {
		t.Errorf("pinned key after forget = %q, want the new one", key)
	}
}

func TestDialContextReachesTheMachine(t *testing.T) {
	hs := hosts.NewInProcess(t, 1)
	p := newProvider(t, hs)
	ctx := context.Background()
	if _, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "c", NumNodes: 1}); err != nil {
		t.Fatal(err)
	}
	// An "agent" listening on the machine's own address.
	ln, err := net.Listen("tcp", net.JoinHostPort(hs[0].Addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "healthy") })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	client := &http.Client{Transport: &http.Transport{DialContext: p.DialContext}}
	get := func() (string, error) {
		resp, err := client.Get("http://" + ln.Addr().String() + "/v1/health")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := get(); err != nil || body != "healthy" {
		t.Fatalf("GET through the pool machine = %q, %v", body, err)
	}
	// The kept SSH connection breaks; the next dial makes a new one.
	hs[0].Cut(t)
	hs[0].Heal(t)
	client.CloseIdleConnections()
	if body, err := get(); err != nil || body != "healthy" {
		t.Errorf("GET after the SSH connection broke = %q, %v", body, err)
	}
	if _, err := p.DialContext(ctx, "tcp", "192.0.2.1:26590"); err == nil || !strings.Contains(err.Error(), "no machine") {
		t.Errorf("dial to an address of no pool machine: %v", err)
	}
}
