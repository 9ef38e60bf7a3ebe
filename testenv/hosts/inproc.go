package hosts

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// inprocSeq numbers in-process hosts of this test process, so each gets
// its own loopback address (127.77.x.y; Linux routes all of 127/8 to lo).
var inprocSeq atomic.Int32

// NewInProcess starts n SSH servers in this process, each on its own
// loopback address and a free port, with its own home (a temporary
// directory) and host key. They accept the current user with the key in
// IdentityFile and serve what bootstrap needs: exec requests (run with
// /bin/sh -c in the home, HOME set), signals, the sftp subsystem and
// direct-tcpip forwarding. Commands run as the current user on this
// machine, so Kill closes the server but cannot kill what it started.
func NewInProcess(t testing.TB, n int) []*Host {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatalf("current user: %v", err)
	}
	keyDir := t.TempDir()
	out := make([]*Host, n)
	for i := range out {
		seq := int(inprocSeq.Add(1))
		ip := "127.0.0.1"
		if isLinux() {
			ip = fmt.Sprintf("127.77.%d.%d", seq/250, seq%250+1)
		}
		home := t.TempDir()
		idFile := filepath.Join(keyDir, fmt.Sprintf("id_ed25519_%d", i))
		clientPub, err := writeKeyPair(idFile, "sky-coord-test")
		if err != nil {
			t.Fatal(err)
		}
		allowed, _, _, _, err := ssh.ParseAuthorizedKey([]byte(clientPub))
		if err != nil {
			t.Fatal(err)
		}
		s := &inprocServer{home: home, user: u.Username, allowed: allowed, conns: map[net.Conn]bool{},
			env: []string{"HOME=" + home, "USER=" + u.Username, "LOGNAME=" + u.Username,
				"SHELL=/bin/sh", "PATH=" + os.Getenv("PATH")}}
		hostKey, err := s.newHostKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.listen(net.JoinHostPort(ip, "0")); err != nil {
			t.Fatalf("in-process ssh server: %v", err)
		}
		_, port, _ := net.SplitHostPort(s.addr)
		p, _ := strconv.Atoi(port)
		h := &Host{Name: fmt.Sprintf("inproc-%d", seq), Addr: ip, Port: p, User: u.Username, Home: home,
			IdentityFile: idFile, HostKey: hostKey, impl: s}
		t.Cleanup(func() { _ = s.kill() })
		out[i] = h
	}
	return out
}

// SetEnv adds environment entries (KEY=VALUE, replacing earlier ones) to
// every command an in-process host runs from now on; PATH=… lets a test
// put stand-in tools first. It panics on a namespace host.
func (h *Host) SetEnv(kv ...string) {
	s, ok := h.impl.(*inprocServer)
	if !ok {
		panic("hosts: SetEnv works on in-process hosts only")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.env = append(s.env, kv...)
}

func isLinux() bool { _, err := os.Stat("/proc/self/ns/net"); return err == nil }

type inprocServer struct {
	home, user string
	allowed    ssh.PublicKey

	mu      sync.Mutex
	cfg     *ssh.ServerConfig
	env     []string
	addr    string // fixed once the first listener is bound
	ln      net.Listener
	conns   map[net.Conn]bool
	stopped bool
}

func (s *inprocServer) newHostKey() (string, error) {
	_, pub, signer, err := newKey("")
	if err != nil {
		return "", err
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if md.User() == s.user && string(key.Marshal()) == string(s.allowed.Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, fmt.Errorf("key not accepted for %q", md.User())
		},
	}
	cfg.AddHostKey(signer)
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
	return pub, nil
}

func (s *inprocServer) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.ln, s.addr = ln, ln.Addr().String()
	s.mu.Unlock()
	go s.serve(ln)
	return nil
}

func (s *inprocServer) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.ln != ln {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		cfg := s.cfg
		s.mu.Unlock()
		go s.handleConn(c, cfg)
	}
}

func (s *inprocServer) handleConn(c net.Conn, cfg *ssh.ServerConfig) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			go s.handleSession(nc)
		case "direct-tcpip":
			go handleDirectTCPIP(nc)
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "unsupported channel type "+nc.ChannelType())
		}
	}
}

// dropAll closes the listener and every connection.
func (s *inprocServer) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
}

func (s *inprocServer) kill() error {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.dropAll()
	return nil
}

func (s *inprocServer) cut() error { s.dropAll(); return nil }

func (s *inprocServer) heal() error {
	s.mu.Lock()
	stopped, addr := s.stopped, s.addr
	s.mu.Unlock()
	if stopped {
		return errors.New("the host was killed")
	}
	return s.listen(addr)
}

func (s *inprocServer) rotateHostKey() (string, error) {
	key, err := s.newHostKey()
	if err != nil {
		return "", err
	}
	s.dropAll()
	s.mu.Lock()
	addr := s.addr
	s.mu.Unlock()
	return key, s.listen(addr)
}

// handleSession serves one session channel: env, exec, signal and the
// sftp subsystem. Shells and ptys are not offered.
func (s *inprocServer) handleSession(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	s.mu.Lock()
	env := append([]string(nil), s.env...)
	s.mu.Unlock()
	var cmd *exec.Cmd
	for req := range reqs {
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) != nil {
				_ = req.Reply(false, nil)
				continue
			}
			env = append(env, kv.Name+"="+kv.Value)
			_ = req.Reply(true, nil)
		case "exec":
			var p struct{ Command string }
			if ssh.Unmarshal(req.Payload, &p) != nil || cmd != nil {
				_ = req.Reply(false, nil)
				continue
			}
			cmd = exec.Command("/bin/sh", "-c", p.Command)
			cmd.Dir, cmd.Env = s.home, env
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			// Reply first: the exit status must not overtake the reply.
			_ = req.Reply(true, nil)
			if err := startExec(cmd, ch); err != nil {
				fmt.Fprintf(ch.Stderr(), "start %q: %v\n", p.Command, err)
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{127}))
				return
			}
		case "signal":
			var p struct{ Signal string }
			if ssh.Unmarshal(req.Payload, &p) == nil && cmd != nil && cmd.Process != nil {
				if sig, ok := signals[p.Signal]; ok {
					_ = syscall.Kill(-cmd.Process.Pid, sig)
				}
			}
			if req.WantReply {
				_ = req.Reply(true, nil)
			}
		case "subsystem":
			var p struct{ Name string }
			if ssh.Unmarshal(req.Payload, &p) != nil || p.Name != "sftp" {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			srv, err := sftp.NewServer(ch, sftp.WithServerWorkingDirectory(s.home))
			if err == nil {
				_ = srv.Serve()
			}
			return
		default:
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}
}

var signals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "HUP": syscall.SIGHUP, "INT": syscall.SIGINT,
	"KILL": syscall.SIGKILL, "QUIT": syscall.SIGQUIT, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

// startExec starts cmd wired to ch and, when it ends, reports its exit
// status and closes the channel.
func startExec(cmd *exec.Cmd, ch ssh.Channel) error {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(stdin, ch)
		stdin.Close()
	}()
	go func() {
		err := cmd.Wait()
		status := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				_, _ = ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
					Signal     string
					CoreDumped bool
					Msg, Lang  string
				}{Signal: signalName(ws.Signal())}))
				ch.Close()
				return
			}
			status = ee.ExitCode()
		} else if err != nil {
			status = 255
		}
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
		ch.Close()
	}()
	return nil
}

func signalName(sig syscall.Signal) string {
	for name, s := range signals {
		if s == sig {
			return name
		}
	}
	return "KILL"
}

// handleDirectTCPIP connects a direct-tcpip channel to its target.
func handleDirectTCPIP(nc ssh.NewChannel) {
	var p struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "bad direct-tcpip request")
		return
	}
	target, err := net.DialTimeout("tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))), 5*time.Second)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		target.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(target, ch)
		if tc, ok := target.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(ch, target)
		_ = ch.CloseWrite()
	}()
	wg.Wait()
	ch.Close()
	target.Close()
}
