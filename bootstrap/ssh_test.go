package bootstrap

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/sky-coord/sky-coord/testenv/hosts"
)

func sshConfig(h *hosts.Host) SSHConfig {
	return SSHConfig{Host: h.Addr, Port: h.Port, User: h.User, IdentityFile: h.IdentityFile,
		HostKey: HostKeyPolicy{Known: h.HostKey}, Name: h.Name, NoSystemd: true}
}

func dial(t *testing.T, cfg SSHConfig) *SSH {
	t.Helper()
	s, err := DialSSH(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSSHFiles(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	s := dial(t, sshConfig(h))
	ctx := context.Background()
	if s.Home() != h.Home {
		t.Errorf("Home() = %q, want %q", s.Home(), h.Home)
	}
	if arch, _ := s.Arch(ctx); arch != runtime.GOARCH {
		t.Errorf("Arch() = %q, want %q", arch, runtime.GOARCH)
	}
	if sum, err := s.FileSHA256(ctx, "missing"); err != nil || sum != "" {
		t.Errorf("FileSHA256 of a missing file = %q, %v; want \"\", nil", sum, err)
	}
	if _, err := s.ReadFile(ctx, "missing"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), h.Name) {
		t.Errorf("ReadFile of a missing file: %v; want fs.ErrNotExist naming the host", err)
	}
	if err := s.WriteFile(ctx, "d/secret.json", strings.NewReader(`{"token":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(h.Home, "d/secret.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("written file mode = %v (%v), want 0600", st.Mode().Perm(), err)
	}
	if st, err := os.Stat(filepath.Join(h.Home, "d")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode = %v (%v), want 0700", st.Mode().Perm(), err)
	}
	got, err := s.ReadFile(ctx, filepath.Join(h.Home, "d/secret.json"))
	if err != nil || string(got) != `{"token":"x"}` {
		t.Errorf("ReadFile = %q, %v", got, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: many concurrent writes
	if err := s.WriteFile(ctx, "d/big", bytes.NewReader(big), 0o644); err != nil {
		t.Fatal(err)
	}
	if sum, _ := s.FileSHA256(ctx, "d/big"); sum != sha256hex(big) {
		t.Errorf("FileSHA256 = %s, want %s", sum, sha256hex(big))
	}
	entries, _ := os.ReadDir(filepath.Join(h.Home, "d"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	if out, err := s.Run(ctx, `printf '%s|%s' "$1" "$2"`, "a b", "it's"); err != nil || string(out) != "a b|it's" {
		t.Errorf("Run with arguments = %q, %v", out, err)
	}
	_, err = s.Run(ctx, "echo boom >&2; exit 3")
	var re *RemoteError
	if !errors.As(err, &re) || re.Status != 3 || re.Stderr != "boom" {
		t.Errorf("failing Run: %v; want exit status 3 with its stderr", err)
	}
	if err := s.RemoveAll(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.Home, "d")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("RemoveAll left d: %v", err)
	}
	if err := s.RemoveAll(ctx, "."); err == nil {
		t.Error("RemoveAll of the home directory was not refused")
	}
}

func TestSSHCompressedUploadChecksSum(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	s := dial(t, sshConfig(h))
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "agent")
	content := bytes.Repeat([]byte("sky-agent "), 100000)
	if err := os.WriteFile(bin, content, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256hex(content)
	if err := install(ctx, s, bin, sum); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(h.Home, BinaryPath))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("installed binary differs from the local one (%v)", err)
	}
	if st, _ := os.Stat(filepath.Join(h.Home, BinaryPath)); st.Mode().Perm() != 0o755 {
		t.Errorf("installed binary mode = %v, want 0755", st.Mode().Perm())
	}
	gz, _ := compressedFile(bin, sum)
	err = s.WriteFileGzip(ctx, BinaryPath, bytes.NewReader(gz), 0o755, strings.Repeat("0", 64))
	if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), h.Name) {
		t.Errorf("upload with a wrong checksum: %v; want it refused, naming the host", err)
	}
	entries, _ := os.ReadDir(filepath.Join(h.Home, Dir))
	if len(entries) != 1 {
		t.Errorf("files left in %s: %v, want only sky-agent", Dir, entries)
	}
}

func TestSSHHostKeyPinning(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	ctx := context.Background()

	cfg := sshConfig(h)
	cfg.HostKey = HostKeyPolicy{OnFirstUse: func(host, key string) error {
		if host != h.HostPort() || key != h.HostKey {
			t.Errorf("OnFirstUse(%q, %q), want (%q, %q)", host, key, h.HostPort(), h.HostKey)
		}
		return nil
	}}
	first := dial(t, cfg)
	if first.HostKey() != h.HostKey {
		t.Errorf("HostKey() = %q, want %q", first.HostKey(), h.HostKey)
	}
	cfg.HostKey.OnFirstUse = func(string, string) error { return errors.New("state store unavailable") }
	if _, err := DialSSH(ctx, cfg); err == nil || !strings.Contains(err.Error(), "state store unavailable") {
		t.Errorf("dial whose key could not be recorded: %v", err)
	}

	old := h.HostKey
	oldKey, _ := ParseHostKey(old)
	h.RotateHostKey(t)
	newKey, _ := ParseHostKey(h.HostKey)
	cfg = sshConfig(h)
	cfg.HostKey = HostKeyPolicy{Known: old, AcceptHint: "run `sky-coord ssh-keys forget {host}`"}
	_, err := DialSSH(ctx, cfg)
	if !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("dial after the host key changed: %v; want ErrHostKeyChanged", err)
	}
	for _, want := range []string{h.Name, ssh.FingerprintSHA256(oldKey), ssh.FingerprintSHA256(newKey),
		"run `sky-coord ssh-keys forget " + h.HostPort() + "`"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	// A pinned key of a type the host no longer has.
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, _ := ssh.NewPublicKey(&rk.PublicKey)
	cfg.HostKey.Known = FormatHostKey(rsaPub)
	_, err = DialSSH(ctx, cfg)
	if !errors.Is(err, ErrHostKeyChanged) || !strings.Contains(err.Error(), "no longer offers a ssh-rsa key") {
		t.Errorf("dial with a pinned RSA key to an ed25519-only host: %v", err)
	}
}

func TestSSHAuthErrors(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	ctx := context.Background()

	cfg := sshConfig(h)
	cfg.IdentityFile = filepath.Join(t.TempDir(), "other")
	if err := writeTestKey(cfg.IdentityFile, ""); err != nil {
		t.Fatal(err)
	}
	_, err := DialSSH(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "authorized_keys") || !strings.Contains(err.Error(), h.Name) {
		t.Errorf("dial with a key the host does not accept: %v", err)
	}

	cfg = sshConfig(h)
	cfg.IdentityFile = filepath.Join(t.TempDir(), "locked")
	if err := writeTestKey(cfg.IdentityFile, "secret"); err != nil {
		t.Fatal(err)
	}
	_, err = DialSSH(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "passphrase") || !strings.Contains(err.Error(), "ssh-add") {
		t.Errorf("dial with a passphrase-protected key: %v", err)
	}

	dead := hosts.NewInProcess(t, 1)[0]
	dead.Kill(t)
	_, err = DialSSH(ctx, sshConfig(dead))
	if err == nil || !strings.Contains(err.Error(), dead.Name+": connect to "+dead.HostPort()) {
		t.Errorf("dial to a dead host: %v", err)
	}
}

func TestSSHAgentAuth(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	data, err := os.ReadFile(h.IdentityFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: raw}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = agent.ServeAgent(keyring, c); c.Close() }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	cfg := sshConfig(h)
	cfg.IdentityFile = ""
	s := dial(t, cfg)
	if out, err := s.Run(context.Background(), "echo ok"); err != nil || string(out) != "ok\n" {
		t.Errorf("Run over an agent-authenticated connection = %q, %v", out, err)
	}
}

func TestSSHDialContextReachesHTTPServer(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	s := dial(t, sshConfig(h))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "agent says hi")
	}))
	t.Cleanup(srv.Close)
	var dials atomic.Int32
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return s.DialContext(ctx, network, addr)
	}}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "agent says hi" || dials.Load() != 1 {
		t.Errorf("GET through SSH = %q after %d dials", body, dials.Load())
	}
	if _, err := s.DialContext(context.Background(), "tcp", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), h.Name) {
		t.Errorf("forwarded dial to a closed port: %v; want an error naming the host", err)
	}
}

func TestSSHStartDetachedOutlivesTheConnection(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	s := dial(t, sshConfig(h))
	pid, err := s.StartDetached(context.Background(), []string{"sleep", "30"}, []string{"SKYC_TEST=a b"}, "logs/sleep.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	s.Close()
	s2 := dial(t, sshConfig(h))
	if _, err := s2.Run(context.Background(), `kill -0 "$1"`, strconv.Itoa(pid)); err != nil {
		t.Fatalf("detached process %d is gone after the connection that started it closed: %v", pid, err)
	}
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if !bytes.Contains(env, []byte("SKYC_TEST=a b\x00")) {
		t.Errorf("detached process lacks its environment entry")
	}
	if sid, _ := getsid(pid); sid != pid {
		t.Errorf("detached process %d is in session %d, want its own", pid, sid)
	}
	if st, err := os.Stat(filepath.Join(h.Home, "logs/sleep.log")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	if err := s2.Signal(context.Background(), pid, int(syscall.SIGTERM)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the signalled process to end", func() bool { return syscall.Kill(pid, 0) != nil || isZombie(pid) })
	if err := s2.Signal(context.Background(), 999999999, 0); err == nil || !strings.Contains(err.Error(), h.Name) {
		t.Errorf("Signal of a missing process: %v", err)
	}
}

// TestSSHStartDetachedWithSystemd runs the systemd branch against
// stand-in systemd-run, systemctl and loginctl that record their calls.
func TestSSHStartDetachedWithSystemd(t *testing.T) {
	h := hosts.NewInProcess(t, 1)[0]
	fake := t.TempDir()
	calls := filepath.Join(fake, "calls")
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(fake, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("loginctl", `echo yes`)
	write("systemctl", `echo "systemctl $*" >> `+calls+`
case "$*" in *MainPID*) cat `+fake+`/pid ;; esac`)
	// systemd-run --user --quiet --collect --unit=U --property=… --working-directory=D --setenv=… -- argv
	write("systemd-run", `echo "systemd-run $*" >> `+calls+`
while [ "$1" != "--" ]; do shift; done; shift
setsid "$@" </dev/null >/dev/null 2>&1 &
echo $! > `+fake+`/pid`)
	h.SetEnv("PATH=" + fake + ":" + os.Getenv("PATH"))
	cfg := sshConfig(h)
	cfg.NoSystemd = false
	s := dial(t, cfg)
	pid, err := s.StartDetached(context.Background(), []string{"sleep", "30"}, []string{"A=1"}, "agent.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if syscall.Kill(pid, 0) != nil {
		t.Errorf("pid %d from the unit is not running", pid)
	}
	log, _ := os.ReadFile(calls)
	unit := unitName(filepath.Join(h.Home, "agent.log"))
	for _, want := range []string{"systemctl --user show-environment", "systemctl --user stop " + unit,
		"systemd-run --user --quiet --collect --unit=" + unit, "--setenv=A=1 -- sleep 30",
		"StandardOutput=append:" + filepath.Join(h.Home, "agent.log")} {
		if !strings.Contains(string(log), want) {
			t.Errorf("calls lack %q:\n%s", want, log)
		}
	}
}

func TestGOARCH(t *testing.T) {
	for in, want := range map[string]string{"x86_64\n": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "i686": "386", "riscv64": "riscv64"} {
		if got := GOARCH(in); got != want {
			t.Errorf("GOARCH(%q) = %q, want %q", in, got, want)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// isZombie reports a process that exited but was not reaped yet (the
// in-process server's children are this test's grandchildren).
func isZombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

func getsid(pid int) (int, error) {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(sid), nil
}

// writeTestKey writes a fresh ed25519 private key to p, protected by
// passphrase when it is not "".
func writeTestKey(p, passphrase string) error {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(k, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(k, "", []byte(passphrase))
	}
	if err != nil {
		return err
	}
	return os.WriteFile(p, pem.EncodeToMemory(block), 0o600)
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
