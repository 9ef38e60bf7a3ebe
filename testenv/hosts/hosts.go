// Package hosts gives tests machines to reach over SSH: network-namespace
// hosts on a private bridge, each with its own address, Linux user, home
// and OpenSSH sshd (New, root only), and in-process SSH servers on
// loopback addresses for fast tests anywhere (NewInProcess). Only tests
// import it.
package hosts

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Host is one machine a test can reach over SSH as User with the key in
// IdentityFile.
type Host struct {
	// Name names the host: its network namespace, or "inproc-N".
	Name string
	// Addr is the host's IP address, reachable from the test process.
	Addr string
	// Port is the SSH port (22 for namespace hosts).
	Port int
	// User is the account to log in as; Home is its home directory.
	User string
	Home string
	// IdentityFile is a passphrase-less ed25519 private key (mode 0600)
	// that User accepts.
	IdentityFile string
	// HostKey is the server's public host key in authorized_keys format
	// ("ssh-ed25519 AAAA…"), without a trailing newline.
	HostKey string

	mu   sync.Mutex
	impl hostImpl
}

type hostImpl interface {
	kill() error
	cut() error
	heal() error
	rotateHostKey() (string, error)
}

// HostPort is Addr:Port.
func (h *Host) HostPort() string { return net.JoinHostPort(h.Addr, strconv.Itoa(h.Port)) }

// Kill takes the host down for good: every process in it is killed and it
// stops answering.
func (h *Host) Kill(t testing.TB) {
	t.Helper()
	if err := h.impl.kill(); err != nil {
		t.Fatalf("kill host %s: %v", h.Name, err)
	}
}

// Cut cuts the host's link: packets to and from it are dropped, its
// processes keep running.
func (h *Host) Cut(t testing.TB) {
	t.Helper()
	if err := h.impl.cut(); err != nil {
		t.Fatalf("cut host %s: %v", h.Name, err)
	}
}

// Heal restores a link that Cut cut.
func (h *Host) Heal(t testing.TB) {
	t.Helper()
	if err := h.impl.heal(); err != nil {
		t.Fatalf("heal host %s: %v", h.Name, err)
	}
}

// RotateHostKey gives the host's SSH server a new host key (as a
// reinstalled machine would have) and updates HostKey.
func (h *Host) RotateHostKey(t testing.TB) {
	t.Helper()
	key, err := h.impl.rotateHostKey()
	if err != nil {
		t.Fatalf("rotate host key of %s: %v", h.Name, err)
	}
	h.mu.Lock()
	h.HostKey = key
	h.mu.Unlock()
}

// ClientConfig returns an x/crypto/ssh client configuration that logs in
// as User with IdentityFile and pins HostKey.
func (h *Host) ClientConfig(t testing.TB) *ssh.ClientConfig {
	t.Helper()
	data, err := os.ReadFile(h.IdentityFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	hk := h.HostKey
	h.mu.Unlock()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hk))
	if err != nil {
		t.Fatal(err)
	}
	return &ssh.ClientConfig{
		User:              h.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   ssh.FixedHostKey(pub),
		HostKeyAlgorithms: []string{pub.Type()},
		Timeout:           10 * time.Second,
	}
}

// Run runs a shell command on the host as User over SSH and returns its
// combined output; the test fails when it cannot connect or the command
// fails.
func (h *Host) Run(t testing.TB, command string) string {
	t.Helper()
	out, err := h.TryRun(t, command)
	if err != nil {
		t.Fatalf("%s: run %q: %v\n%s", h.Name, command, err, out)
	}
	return out
}

// TryRun is Run that returns the error instead of failing the test.
func (h *Host) TryRun(t testing.TB, command string) (string, error) {
	t.Helper()
	c, err := ssh.Dial("tcp", h.HostPort(), h.ClientConfig(t))
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(command)
	return string(out), err
}

// newKey returns a fresh ed25519 key: the private key in OpenSSH PEM form
// and the public key in authorized_keys form (no trailing newline).
func newKey(comment string) (priv []byte, pub string, signer ssh.Signer, err error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", nil, err
	}
	block, err := ssh.MarshalPrivateKey(k, comment)
	if err != nil {
		return nil, "", nil, err
	}
	signer, err = ssh.NewSignerFromKey(k)
	if err != nil {
		return nil, "", nil, err
	}
	pub = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	return pem.EncodeToMemory(block), pub, signer, nil
}

// writeKeyPair writes a fresh identity to path (0600) and path.pub.
func writeKeyPair(path, comment string) (pub string, err error) {
	priv, pub, _, err := newKey(comment)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, priv, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(path+".pub", []byte(pub+" "+comment+"\n"), 0o644); err != nil {
		return "", err
	}
	return pub, nil
}

// waitListening polls until something accepts TCP connections on addr.
func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s: %w", addr, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
