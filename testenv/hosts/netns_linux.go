package hosts

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The names and addresses namespace hosts use; chosen to be unlikely to
// clash with anything else on a machine.
const (
	stateDir   = "/run/skyc-hosts" // per-host files, claims and the lock
	bridgeName = "skyc-br0"
	// Subnet holds every namespace host; the bridge, which the test
	// process reaches them through, is GatewayAddr.
	Subnet      = "10.87.0.0/16"
	GatewayAddr = "10.87.255.254"
	sshdPath    = "/usr/sbin/sshd"
	sftpServer  = "/usr/lib/openssh/sftp-server"
	maxHosts    = 1000
)

// New creates n hosts, each a network namespace on the bridge skyc-br0
// with its own address in Subnet, its own Linux user and home with the
// key in IdentityFile authorized, and its own OpenSSH sshd on port 22.
// Everything is removed at cleanup; what a crashed test run left behind
// is removed by the next New. It skips the test when not root or when ip,
// useradd or sshd are missing (Debian packages iproute2, passwd,
// openssh-server).
func New(t testing.TB, n int) []*Host {
	t.Helper()
	if why := unavailable(); why != "" {
		t.Skip("namespace test hosts: " + why)
	}
	unlock, err := lockState()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if err := cleanStale(); err != nil {
		t.Fatalf("remove test hosts left by an earlier run: %v", err)
	}
	if err := ensureBridge(); err != nil {
		t.Fatal(err)
	}
	out := make([]*Host, 0, n)
	for i := 0; i < n; i++ {
		h, err := createHost()
		if h != nil {
			t.Cleanup(func() {
				unlock, lerr := lockState()
				if lerr != nil {
					t.Error(lerr)
					return
				}
				defer unlock()
				if err := h.impl.(*nsHost).destroy(); err != nil {
					t.Errorf("remove test host %s: %v", h.Name, err)
				}
			})
		}
		if err != nil {
			t.Fatalf("create test host: %v", err)
		}
		out = append(out, h)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(out))
	for i, h := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.impl.(*nsHost).waitSSHD()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

// unavailable says why namespace hosts cannot be made here, or "".
func unavailable() string {
	if os.Geteuid() != 0 {
		return "they need root (network namespaces, useradd); run the tests as root, as CI does"
	}
	for _, tool := range []string{"ip", "useradd", "userdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is missing (apt-get install -y iproute2 passwd)"
		}
	}
	if _, err := os.Stat(sshdPath); err != nil {
		return sshdPath + " is missing (apt-get install -y openssh-server)"
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return "this kernel has no network namespaces"
	}
	_, subnet, _ := net.ParseCIDR(Subnet)
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Name == bridgeName {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (subnet.Contains(ipn.IP) || ipn.Contains(subnet.IP)) {
				return fmt.Sprintf("their subnet %s clashes with %s on %s", Subnet, ipn, ifc.Name)
			}
		}
	}
	return ""
}

// nsHost is one namespace host: index idx names everything it has.
type nsHost struct {
	idx  int
	addr string
	user string
	mu   sync.Mutex
	sshd *exec.Cmd
}

func (h *nsHost) ns() string       { return "skyc-h" + strconv.Itoa(h.idx) }
func (h *nsHost) veth() string     { return "skyc-v" + strconv.Itoa(h.idx) }
func (h *nsHost) dir() string      { return filepath.Join(stateDir, "h"+strconv.Itoa(h.idx)) }
func (h *nsHost) config() string   { return filepath.Join(h.dir(), "sshd_config") }
func (h *nsHost) hostKey() string  { return filepath.Join(h.dir(), "ssh_host_ed25519_key") }
func (h *nsHost) sshdLog() string  { return filepath.Join(h.dir(), "sshd.log") }
func (h *nsHost) identity() string { return filepath.Join(h.dir(), "id_ed25519") }

func hostAddr(idx int) string { return fmt.Sprintf("10.87.%d.%d", idx/250, idx%250+1) }

func ensureBridge() error {
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		return nil
	}
	// Bridged packets skip iptables where br_netfilter is loaded, so a
	// DROP policy in FORWARD (Docker's) does not cut hosts from each other.
	if err := run("ip", "link", "add", bridgeName, "type", "bridge", "nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0"); err != nil {
		if err := run("ip", "link", "add", bridgeName, "type", "bridge"); err != nil {
			return err
		}
	}
	if err := run("ip", "addr", "add", GatewayAddr+"/16", "dev", bridgeName); err != nil {
		return err
	}
	return run("ip", "link", "set", bridgeName, "up")
}

// createHost claims a free index and builds the host; sshd is started
// but not waited for. On error the returned host (if any) must still be
// destroyed.
func createHost() (*Host, error) {
	idx := -1
	me := owner(os.Getpid())
	for i := 0; i < maxHosts; i++ {
		dir := filepath.Join(stateDir, "h"+strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o700); err == nil {
			if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(me), 0o600); err != nil {
				return nil, err
			}
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("all %d test host slots in %s are taken", maxHosts, stateDir)
	}
	h := &nsHost{idx: idx, addr: hostAddr(idx), user: "skyc-h" + strconv.Itoa(idx)}
	host := &Host{Name: h.ns(), Addr: h.addr, Port: 22, User: h.user, Home: "/home/" + h.user,
		IdentityFile: h.identity(), impl: h}
	if err := h.network(); err != nil {
		return host, err
	}
	if err := h.account(host); err != nil {
		return host, err
	}
	key, err := h.writeSSHD()
	if err != nil {
		return host, err
	}
	host.HostKey = key
	return host, h.startSSHD()
}

// network builds the namespace and its link. The host's MAC address is
// fixed by its index: an address reused right after an earlier host
// released it then needs no new ARP entry anywhere.
func (h *nsHost) network() error {
	peer := "skyc-p" + strconv.Itoa(h.idx)
	mac := fmt.Sprintf("02:87:00:00:%02x:%02x", h.idx/256, h.idx%256)
	_ = run("ip", "neigh", "flush", "to", h.addr, "dev", bridgeName)
	for _, args := range [][]string{
		{"netns", "add", h.ns()},
		{"link", "add", h.veth(), "type", "veth", "peer", "name", peer, "address", mac, "netns", h.ns()},
		{"link", "set", h.veth(), "master", bridgeName, "up"},
		{"-n", h.ns(), "link", "set", peer, "name", "eth0"},
		{"-n", h.ns(), "addr", "add", h.addr + "/16", "dev", "eth0"},
		{"-n", h.ns(), "link", "set", "eth0", "up"},
		{"-n", h.ns(), "link", "set", "lo", "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// account creates the user (its password field "*": no password, but not
// locked, which sshd without PAM would refuse) and authorizes a fresh key.
func (h *nsHost) account(host *Host) error {
	home := host.Home
	if err := runRetry("useradd", "-m", "-d", home, "-s", "/bin/bash", "-p", "*", h.user); err != nil {
		return err
	}
	u, err := user.Lookup(h.user)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	pub, err := writeKeyPair(h.identity(), "sky-coord-test@"+h.ns())
	if err != nil {
		return err
	}
	sshDir := filepath.Join(home, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return err
	}
	ak := filepath.Join(sshDir, "authorized_keys")
	if err := os.WriteFile(ak, []byte(pub+"\n"), 0o600); err != nil {
		return err
	}
	for _, p := range []string{home, sshDir, ak} {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return os.Chmod(home, 0o755) // other test users may read it, as on a shared box
}

func (h *nsHost) writeSSHD() (string, error) {
	priv, pub, _, err := newKey("")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(h.hostKey(), priv, 0o600); err != nil {
		return "", err
	}
	conf := fmt.Sprintf(`ListenAddress %s:22
HostKey %s
PidFile %s/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
PermitRootLogin no
AllowUsers %s
AllowTcpForwarding yes
MaxStartups 200:30:400
MaxSessions 100
UseDNS no
LogLevel VERBOSE
Subsystem sftp %s
`, h.addr, h.hostKey(), h.dir(), h.user, sftpServer)
	if penaltiesSupported() {
		conf += "PerSourcePenalties no\n"
	}
	if err := os.WriteFile(h.config(), []byte(conf), 0o600); err != nil {
		return "", err
	}
	return pub, nil
}

var sshdVersion = regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`)

// penaltiesSupported: OpenSSH 9.8 penalizes sources of failed logins by
// default (tests make many); older versions reject the keyword.
func penaltiesSupported() bool {
	out, _ := exec.Command(sshdPath, "-V").CombinedOutput()
	m := sshdVersion.FindStringSubmatch(string(out))
	if m == nil {
		return false
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major > 9 || major == 9 && minor >= 8
}

func (h *nsHost) startSSHD() error {
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", h.ns(), sshdPath, "-D", "-f", h.config(), "-E", h.sshdLog())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd in %s: %w", h.ns(), err)
	}
	h.mu.Lock()
	h.sshd = cmd
	h.mu.Unlock()
	go func() { _ = cmd.Wait() }()
	return nil
}

func (h *nsHost) waitSSHD() error {
	if err := waitListening(net.JoinHostPort(h.addr, "22"), 10*time.Second); err != nil {
		log, _ := os.ReadFile(h.sshdLog())
		return fmt.Errorf("sshd of %s: %w; its log:\n%s", h.ns(), err, log)
	}
	return nil
}

// killAll kills every process in the namespace.
func (h *nsHost) killAll() error {
	out, err := exec.Command("ip", "netns", "pids", h.ns()).Output()
	if err != nil {
		return nil // no such namespace
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command("ip", "netns", "pids", h.ns()).Output()
		if strings.TrimSpace(string(out)) == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %s in %s outlived SIGKILL", strings.Fields(string(out)), h.ns())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *nsHost) kill() error {
	if err := h.killAll(); err != nil {
		return err
	}
	return h.cut()
}

func (h *nsHost) cut() error  { return run("ip", "link", "set", h.veth(), "down") }
func (h *nsHost) heal() error { return run("ip", "link", "set", h.veth(), "up") }

func (h *nsHost) rotateHostKey() (string, error) {
	h.mu.Lock()
	cmd := h.sshd
	h.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
	// Wait until the old sshd no longer listens, then start a new one.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(h.addr, "22"), 100*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	key, err := h.writeSSHD()
	if err != nil {
		return "", err
	}
	if err := h.startSSHD(); err != nil {
		return "", err
	}
	return key, h.waitSSHD()
}

// destroy removes everything of the host: processes, namespace, veth,
// user and home, its files, and the bridge when it was the last host.
// Call with the lock held.
func (h *nsHost) destroy() error {
	var errs []error
	if err := h.killAll(); err != nil {
		errs = append(errs, err)
	}
	if _, err := os.Stat("/run/netns/" + h.ns()); err == nil {
		if err := run("ip", "netns", "del", h.ns()); err != nil {
			errs = append(errs, err)
		}
	}
	// Deleting the namespace deletes the pair, though not always at once.
	if _, err := net.InterfaceByName(h.veth()); err == nil {
		// It may vanish between the look and the delete: both ways of
		// saying so are fine.
		if err := run("ip", "link", "del", h.veth()); err != nil && !strings.Contains(err.Error(), "Cannot find device") && !strings.Contains(err.Error(), "No such device") {
			errs = append(errs, err)
		}
	}
	if _, err := user.Lookup(h.user); err == nil {
		if err := runRetry("userdel", "-r", "-f", h.user); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll("/home/" + h.user); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(h.dir()); err != nil {
			errs = append(errs, err)
		}
		if err := removeBridgeIfUnused(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// runRetry runs a shadow-utils command, retrying while another one holds
// the password file lock.
func runRetry(name string, args ...string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = run(name, args...); err == nil || !strings.Contains(err.Error(), "lock") {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}
