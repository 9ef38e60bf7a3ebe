package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/testenv/hosts"
)

// TestSSHAgainstOpenSSH runs the transport against real sshd hosts in
// network namespaces, each its own user (root only; skipped elsewhere).
func TestSSHAgainstOpenSSH(t *testing.T) {
	hs := hosts.New(t, 2)
	ctx := context.Background()
	bin := fakeAgent(t, t.TempDir(), "v1")
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}

	var targets []Target
	for i, h := range hs {
		cfg := sshConfig(h)
		cfg.NoSystemd = false // probe: these users have no systemd manager
		acfg := api.AgentConfig{Cluster: "c", Rank: i, Home: h.Home, Marker: h.Home}
		targets = append(targets, Target{
			Connect: func(ctx context.Context) (Transport, error) { return DialSSH(ctx, cfg) },
			Node: Node{Name: h.Name, AgentBinaries: map[string]string{runtime.GOARCH: bin}, Config: acfg,
				Health: pidHealth(h.Home, acfg), Timeout: 10 * time.Second},
		})
		t.Cleanup(func() { killRecorded(t, h.Home) })
	}
	start := time.Now()
	res, err := EnsureAll(ctx, targets)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first bootstrap of %d hosts: %s", len(hs), time.Since(start).Round(time.Millisecond))
	for i, r := range res {
		if !r.Uploaded || !r.Started {
			t.Errorf("host %d: %+v, want upload and start", i, r)
		}
	}
	owner := hs[0].Run(t, "stat -c '%U %a' ~/"+ConfigPath+" ~/"+BinaryPath+" ~/"+Dir)
	if want := fmt.Sprintf("%[1]s 600\n%[1]s 755\n%[1]s 700\n", hs[0].User); owner != want {
		t.Errorf("installed files (owner mode):\n%s\nwant\n%s", owner, want)
	}
	start = time.Now()
	res, err = EnsureAll(ctx, targets)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second bootstrap of %d hosts: %s", len(hs), time.Since(start).Round(time.Millisecond))
	for i, r := range res {
		if r.Uploaded || r.Started {
			t.Errorf("host %d, second run: %+v, want nothing done", i, r)
		}
	}

	// The agent runs as the host's user, in its own session, and in the
	// host's network namespace.
	h := hs[0]
	s := dial(t, sshConfig(h))
	out, err := s.Run(ctx, `pid=$(cat ~/`+PIDPath+`); ps -o user=,sid=,pid= -p "$pid"`)
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(out)); len(f) != 3 || f[0] != h.User || f[1] != f[2] {
		t.Errorf("agent process (user sid pid) = %q, want %s in its own session", out, h.User)
	}

	// A forwarded connection starts on the node: it reaches the node's
	// own address, and the test process's listener on the bridge.
	c, err := s.DialContext(ctx, "tcp", net.JoinHostPort(h.Addr, "22"))
	if err != nil {
		t.Fatal(err)
	}
	banner := make([]byte, 7)
	_, _ = io.ReadFull(c, banner)
	c.Close()
	if string(banner) != "SSH-2.0" {
		t.Errorf("forwarded dial to the node's own sshd read %q", banner)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(hosts.GatewayAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "from ", r.RemoteAddr)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	client := &http.Client{Transport: &http.Transport{DialContext: s.DialContext}}
	resp, err := client.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), "from "+h.Addr+":") {
		t.Errorf("HTTP through SSH: %q, want it to come from %s", body, h.Addr)
	}

	if err := Remove(ctx, s); err != nil {
		t.Fatal(err)
	}
	if out := h.Run(t, "ls -A ~; pgrep -u $(id -u) -f sleep || true"); strings.Contains(out, Dir) || strings.Contains(out, "sleep") {
		t.Errorf("after Remove the host still has:\n%s", out)
	}

	// The machine was reinstalled: its new key is refused.
	old := hs[1].HostKey
	hs[1].RotateHostKey(t)
	_, err = DialSSH(ctx, SSHConfig{Host: hs[1].Addr, User: hs[1].User, IdentityFile: hs[1].IdentityFile,
		HostKey: HostKeyPolicy{Known: old}})
	if !errors.Is(err, ErrHostKeyChanged) || !strings.Contains(err.Error(), "sky-coord ssh-keys forget "+hs[1].HostPort()) {
		t.Errorf("dial after the host key changed: %v", err)
	}

	// A host that is gone fails fast with its name and the stage.
	hs[1].Kill(t)
	_, err = DialSSH(ctx, SSHConfig{Host: hs[1].Addr, User: hs[1].User, IdentityFile: hs[1].IdentityFile,
		ConnectTimeout: time.Second, Name: "node 1 (" + hs[1].Addr + ")"})
	if err == nil || !strings.Contains(err.Error(), "node 1 ("+hs[1].Addr+"): connect to "+hs[1].HostPort()) {
		t.Errorf("dial to a killed host: %v", err)
	}
}
