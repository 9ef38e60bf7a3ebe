package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// SSHConfig says how to reach a node over SSH.
type SSHConfig struct {
	// Host is the node's address or name; Port its SSH port (0: 22).
	Host string
	Port int
	User string
	// IdentityFile is a passphrase-less private key (ed25519, ECDSA or
	// RSA; "~/" is expanded). When "", the keys of the ssh-agent at
	// $SSH_AUTH_SOCK are used, else ~/.ssh/id_ed25519, id_ecdsa or id_rsa.
	IdentityFile string
	HostKey      HostKeyPolicy
	// ConnectTimeout bounds the TCP connect and the SSH handshake (0: 10s).
	ConnectTimeout time.Duration
	// Name names the node in errors ("node 1 (10.0.0.5)"); "" uses Host.
	Name string
	// NoSystemd starts agents with setsid even where a systemd user
	// manager could run them.
	NoSystemd bool
}

// SSH is a Transport to a node over one SSH connection: commands run in
// sessions, files move over SFTP, and DialContext reaches ports on the
// node through forwarded channels. It is safe for concurrent use.
type SSH struct {
	cfg      SSHConfig
	name     string
	hostport string
	client   *ssh.Client
	home     string
	uname    string // `uname -m`
	hostKey  string
	done     chan struct{}

	mu     sync.Mutex
	sftp   *sftp.Client
	detach string // "systemd" or "setsid", probed on first start
}

var (
	_ Transport        = (*SSH)(nil)
	_ Archer           = (*SSH)(nil)
	_ CompressedWriter = (*SSH)(nil)
	_ Commander        = (*SSH)(nil)
	_ Remover          = (*SSH)(nil)
	_ AgentDialer      = (*SSH)(nil)
)

// keepaliveEvery is how often an idle connection is probed; three missed
// answers close it, so a dead node is noticed.
const keepaliveEvery = 15 * time.Second

// DialSSH connects, authenticates, checks the host key against cfg's
// policy and reads the node's home directory and architecture. Every
// error names the node and the stage.
func DialSSH(ctx context.Context, cfg SSHConfig) (*SSH, error) {
	if cfg.Port == 0 {
		cfg.Port = 22
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	name := cfg.Name
	if name == "" {
		name = cfg.Host
	}
	hostport := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	if cfg.User == "" {
		return nil, fmt.Errorf("%s: no SSH user given for %s", name, hostport)
	}
	var known ssh.PublicKey
	if cfg.HostKey.Known != "" {
		k, err := ParseHostKey(cfg.HostKey.Known)
		if err != nil {
			return nil, fmt.Errorf("%s: pinned host key: %w", name, err)
		}
		known = k
	}
	auth, authDesc, closeAuth, err := authMethods(cfg.IdentityFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer closeAuth()
	var seen string
	ccfg := &ssh.ClientConfig{
		User:            cfg.User,
		Auth:            auth,
		HostKeyCallback: cfg.HostKey.callback(hostport, known, &seen),
		Timeout:         cfg.ConnectTimeout,
	}
	if known != nil {
		ccfg.HostKeyAlgorithms = hostKeyAlgorithms(known)
	}

	d := net.Dialer{Timeout: cfg.ConnectTimeout}
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to %s: %w; check that the machine is up and sshd listens on port %d", name, hostport, err, cfg.Port)
	}
	_ = conn.SetDeadline(time.Now().Add(cfg.ConnectTimeout))
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewClientConn(conn, hostport, ccfg)
	stop()
	if err != nil {
		conn.Close()
		return nil, handshakeError(ctx, name, hostport, cfg, known, authDesc, err)
	}
	_ = conn.SetDeadline(time.Time{})
	s := &SSH{cfg: cfg, name: name, hostport: hostport, client: ssh.NewClient(c, chans, reqs),
		hostKey: seen, done: make(chan struct{})}
	go func() {
		_ = s.client.Wait()
		close(s.done)
	}()
	go s.keepalive()
	out, err := s.run(ctx, `printf '%s\n' "$HOME"; uname -m`)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: read home directory and architecture: %w", name, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "/") {
		s.Close()
		return nil, fmt.Errorf("%s: read home directory and architecture: unexpected answer %q", name, out)
	}
	s.home, s.uname = path.Clean(lines[0]), strings.TrimSpace(lines[1])
	return s, nil
}

func handshakeError(ctx context.Context, name, hostport string, cfg SSHConfig, known ssh.PublicKey, authDesc string, err error) error {
	var changed *HostKeyChangedError
	switch {
	case errors.As(err, &changed):
		return fmt.Errorf("%s: %w", name, changed)
	case known != nil && strings.Contains(err.Error(), "no common algorithm for host key"):
		return fmt.Errorf("%s: %w", name, cfg.HostKey.changed(hostport, known, nil))
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("%s: log in to %s as %s with %s: %w; check that its public key is in ~%s/.ssh/authorized_keys on the machine",
			name, hostport, cfg.User, authDesc, err, cfg.User)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: SSH handshake with %s: %w", name, hostport, ctx.Err())
	}
	return fmt.Errorf("%s: SSH handshake with %s: %w", name, hostport, err)
}

// authMethods returns the public-key authentication to use and says
// where its keys come from.
func authMethods(identityFile string) ([]ssh.AuthMethod, string, func(), error) {
	none := func() {}
	if identityFile != "" {
		p, err := expandHome(identityFile)
		if err != nil {
			return nil, "", none, err
		}
		signer, err := loadKey(p)
		if err != nil {
			return nil, "", none, err
		}
		return []ssh.AuthMethod{ssh.PublicKeys(signer)}, "identity file " + p, none, nil
	}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return nil, "", none, fmt.Errorf("reach the ssh-agent at SSH_AUTH_SOCK=%s: %w; start one (eval $(ssh-agent); ssh-add) or give an identity file", sock, err)
		}
		ag := agent.NewClient(conn)
		return []ssh.AuthMethod{ssh.PublicKeysCallback(ag.Signers)}, "the keys of the ssh-agent at " + sock, func() { conn.Close() }, nil
	}
	home, _ := os.UserHomeDir()
	for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		p := filepath.Join(home, ".ssh", n)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		signer, err := loadKey(p)
		if err != nil {
			return nil, "", none, err
		}
		return []ssh.AuthMethod{ssh.PublicKeys(signer)}, "identity file " + p, none, nil
	}
	return nil, "", none, errors.New("no identity file given, no ssh-agent (SSH_AUTH_SOCK is unset) and no ~/.ssh/id_ed25519, id_ecdsa or id_rsa: set identity_file for the host")
}

func loadKey(p string) (ssh.Signer, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read identity file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fmt.Errorf("identity file %s is protected by a passphrase, which sky-coord cannot ask for: load it into an ssh-agent (ssh-add %s) and leave identity_file unset", p, p)
	}
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w (want an OpenSSH or PEM private key: ed25519, ECDSA or RSA)", p, err)
	}
	return signer, nil
}

func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expand %s: %w", p, err)
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}

func (s *SSH) keepalive() {
	t := time.NewTicker(keepaliveEvery)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		answered := make(chan struct{})
		go func() {
			_, _, err := s.client.SendRequest("keepalive@openssh.com", true, nil)
			if err == nil {
				close(answered)
			}
		}()
		select {
		case <-answered:
			missed = 0
		case <-s.done:
			return
		case <-time.After(keepaliveEvery):
			if missed++; missed >= 3 {
				s.client.Close()
				return
			}
		}
	}
}

// Name is the node's name in errors.
func (s *SSH) Name() string { return s.name }

// Home implements Transport.
func (s *SSH) Home() string { return s.home }

// HostKey is the key the host offered, in authorized_keys format: the one
// to store when none was known.
func (s *SSH) HostKey() string { return s.hostKey }

// Arch implements Archer.
func (s *SSH) Arch(context.Context) (string, error) { return GOARCH(s.uname), nil }

// Client is the underlying SSH connection, for interactive sessions.
func (s *SSH) Client() *ssh.Client { return s.client }

// Done is closed when the connection has ended (DialContext closes a
// connection it finds broken).
func (s *SSH) Done() <-chan struct{} { return s.done }

// DialContext implements AgentDialer: the connection is a direct-tcpip
// channel through SSH, made by the node's sshd to addr.
func (s *SSH) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("%s: dial %s %s through SSH: only TCP can be forwarded", s.name, network, addr)
	}
	c, err := s.client.DialContext(ctx, "tcp", addr)
	var rejected *ssh.OpenChannelError
	switch {
	case err == nil:
		return c, nil
	case errors.As(err, &rejected):
		return nil, fmt.Errorf("%s: open a forwarded connection to %s through SSH: %w (is the agent up, and does the node's sshd allow TCP forwarding?)", s.name, addr, err)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s: open a forwarded connection to %s through SSH: %w", s.name, addr, ctx.Err())
	}
	// The connection itself failed: close it, so Done tells the caller
	// to dial again.
	s.client.Close()
	<-s.done
	return nil, fmt.Errorf("%s: open a forwarded connection to %s: the SSH connection broke: %w", s.name, addr, err)
}

// Listen listens on the node (a remote forward, like ssh -R): connections
// to addr on the node arrive here.
func (s *SSH) Listen(addr string) (net.Listener, error) {
	ln, err := s.client.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s on the node through SSH: %w (does the node's sshd allow TCP forwarding?)", s.name, addr, err)
	}
	return ln, nil
}

// Close implements Transport. Agents started detached keep running.
func (s *SSH) Close() error {
	s.mu.Lock()
	if s.sftp != nil {
		s.sftp.Close()
		s.sftp = nil
	}
	s.mu.Unlock()
	err := s.client.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (s *SSH) abs(p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(s.home, p)
}
