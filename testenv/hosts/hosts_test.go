package hosts

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// reachable reports whether an SSH login to h succeeds within timeout.
func reachable(t *testing.T, h *Host, timeout time.Duration) error {
	cfg := h.ClientConfig(t)
	cfg.Timeout = timeout
	c, err := ssh.Dial("tcp", h.HostPort(), cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

func TestNamespaceHosts(t *testing.T) {
	start := time.Now()
	hs := New(t, 3)
	t.Logf("3 hosts up in %s", time.Since(start).Round(time.Millisecond))
	seen := map[string]bool{}
	for _, h := range hs {
		out := h.Run(t, `printf '%s %s\n' "$(id -un)" "$HOME"; ip -4 -o addr show dev eth0`)
		lines := strings.SplitN(out, "\n", 2)
		if lines[0] != h.User+" "+h.Home {
			t.Errorf("%s: logged in as %q, want %q", h.Name, lines[0], h.User+" "+h.Home)
		}
		if !strings.Contains(out, " "+h.Addr+"/") {
			t.Errorf("%s: eth0 lacks %s:\n%s", h.Name, h.Addr, out)
		}
		if seen[h.Addr] || seen[h.User] {
			t.Errorf("%s: address %s or user %s given twice", h.Name, h.Addr, h.User)
		}
		seen[h.Addr], seen[h.User] = true, true
	}

	// Hosts reach each other on the bridge.
	banner := hs[0].Run(t, `exec 3<>/dev/tcp/`+hs[1].Addr+`/22; head -c 7 <&3`)
	if banner != "SSH-2.0" {
		t.Errorf("%s reading %s:22 got %q, want an SSH banner", hs[0].Name, hs[1].Addr, banner)
	}

	// Cut drops the link until Heal.
	hs[1].Cut(t)
	if err := reachable(t, hs[1], 500*time.Millisecond); err == nil {
		t.Errorf("%s answers while cut", hs[1].Name)
	}
	hs[1].Heal(t)
	if err := reachable(t, hs[1], 5*time.Second); err != nil {
		t.Errorf("%s after heal: %v", hs[1].Name, err)
	}

	// Kill takes a host down; the others stay.
	hs[2].Run(t, "setsid sleep 300 </dev/null >/dev/null 2>&1 &")
	hs[2].Kill(t)
	if err := reachable(t, hs[2], 500*time.Millisecond); err == nil {
		t.Errorf("%s answers after Kill", hs[2].Name)
	}
	if err := reachable(t, hs[0], 5*time.Second); err != nil {
		t.Errorf("%s after another host was killed: %v", hs[0].Name, err)
	}

	// A new host key, as on a reinstalled machine.
	old := hs[0].HostKey
	hs[0].RotateHostKey(t)
	if hs[0].HostKey == old {
		t.Fatal("RotateHostKey kept the key")
	}
	if out := hs[0].Run(t, "echo ok"); out != "ok\n" {
		t.Errorf("after rotation: %q", out)
	}
}

func TestInProcessHosts(t *testing.T) {
	hs := NewInProcess(t, 2)
	if hs[0].Addr == hs[1].Addr && hs[0].Port == hs[1].Port {
		t.Fatalf("two in-process hosts share %s", hs[0].HostPort())
	}
	for _, h := range hs {
		if out := h.Run(t, `printf %s "$HOME"`); out != h.Home {
			t.Errorf("%s: HOME = %q, want %q", h.Name, out, h.Home)
		}
	}
	h := hs[0]
	h.Cut(t)
	if err := reachable(t, h, time.Second); err == nil {
		t.Errorf("%s answers while cut", h.Name)
	}
	h.Heal(t)
	if err := reachable(t, h, time.Second); err != nil {
		t.Errorf("%s after heal: %v", h.Name, err)
	}
	old := h.HostKey
	h.RotateHostKey(t)
	if h.HostKey == old {
		t.Error("RotateHostKey kept the key")
	}
	if err := reachable(t, h, time.Second); err != nil {
		t.Errorf("%s after key rotation: %v", h.Name, err)
	}
	h.Kill(t)
	if _, err := net.DialTimeout("tcp", h.HostPort(), time.Second); err == nil {
		t.Errorf("%s accepts connections after Kill", h.Name)
	}
}

// TestStaleHostsAreRemoved kills a test process that holds a host, as a
// crash would, and checks that the next New removes what it left: its
// processes and its user's files.
func TestStaleHostsAreRemoved(t *testing.T) {
	if os.Getenv("SKYC_HOSTS_CRASH") == "1" {
		h := New(t, 1)[0]
		h.Run(t, "touch ~/left-by-crashed-run")
		pid := h.impl.(*nsHost).sshd.Process.Pid
		fmt.Printf("HOST %s %d\n", h.Home, pid)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		return
	}
	if why := unavailable(); why != "" {
		t.Skip("namespace test hosts: " + why)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStaleHostsAreRemoved$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SKYC_HOSTS_CRASH=1")
	out, _ := cmd.Output()
	var home string
	var sshdPID int
	if _, err := fmt.Sscanf(string(out), "HOST %s %d", &home, &sshdPID); err != nil {
		t.Fatalf("crashing child printed %q: %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(home, "left-by-crashed-run")); err != nil {
		t.Fatalf("the crashed run left nothing to clean: %v", err)
	}
	New(t, 1)
	if _, err := os.Stat(filepath.Join(home, "left-by-crashed-run")); err == nil {
		t.Errorf("%s of the crashed run is still there", home)
	}
	if syscall.Kill(sshdPID, 0) == nil && !zombie(sshdPID) {
		t.Errorf("sshd %d of the crashed run still runs", sshdPID)
	}
}

// zombie reports a process that ended but was not reaped yet.
func zombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}
