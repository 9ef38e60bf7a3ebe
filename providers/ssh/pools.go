package ssh

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// PoolsFileName is the file, under SKY_COORD_HOME, that lists the pools.
const PoolsFileName = "ssh_node_pools.yaml"

// Pool is a named set of machines, as in SkyPilot's ssh_node_pools.yaml:
//
//	my-pool:
//	  user: ubuntu                  # default for the pool
//	  identity_file: ~/.ssh/id_ed25519
//	  hosts:
//	    - 10.0.0.5
//	    - ip: 10.0.0.6
//	      user: alice
//	      identity_file: ~/.ssh/alice
//	      port: 2222
type Pool struct {
	Name  string
	Hosts []Host
}

// Host is one machine of a pool, with the pool's defaults applied.
type Host struct {
	IP   string `json:"ip"` // address or DNS name
	Port int    `json:"port"`
	User string `json:"user"`
	// IdentityFile is the private key, "~" expanded; "" means the
	// ssh-agent's keys.
	IdentityFile string `json:"identity_file,omitempty"`
}

// Addr is the host's address as host:port; it names the machine in the
// provider's records.
func (h Host) Addr() string { return net.JoinHostPort(h.IP, strconv.Itoa(h.Port)) }

// Pools is every pool of a file, in file order.
type Pools struct {
	File   string
	Order  []string
	ByName map[string]*Pool
}

// LoadPools reads a pools file; a missing file is no pools. Errors carry
// the file, line and column.
func LoadPools(path string) (*Pools, error) {
	ps := &Pools{File: path, ByName: map[string]*Pool{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ps, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read SSH node pools: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return ps, nil
	}
	p := poolParser{file: path}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, p.errorf(root, "want a mapping of pool names to pools")
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		pool, err := p.pool(k.Value, v)
		if err != nil {
			return nil, err
		}
		if _, dup := ps.ByName[pool.Name]; dup {
			return nil, p.errorf(k, "pool %q is defined twice", pool.Name)
		}
		ps.ByName[pool.Name] = pool
		ps.Order = append(ps.Order, pool.Name)
	}
	return ps, nil
}

// Names lists the pools, sorted.
func (ps *Pools) Names() []string {
	out := append([]string(nil), ps.Order...)
	sort.Strings(out)
	return out
}

type poolParser struct{ file string }

func (p poolParser) errorf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s:%d:%d: %s", p.file, n.Line, n.Column, fmt.Sprintf(format, args...))
}

// defaults are the pool-level settings hosts inherit.
type defaults struct {
	user, identity string
	port           int
}

func (p poolParser) pool(name string, n *yaml.Node) (*Pool, error) {
	if name == "" {
		return nil, p.errorf(n, "a pool needs a name")
	}
	if n.Kind != yaml.MappingNode {
		return nil, p.errorf(n, "pool %q: want a mapping with user, identity_file and hosts", name)
	}
	pool := &Pool{Name: name}
	d := defaults{port: 22}
	var hosts *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "user":
			d.user, err = p.str(v, name, k.Value)
		case "identity_file":
			d.identity, err = p.str(v, name, k.Value)
		case "port":
			d.port, err = p.port(v, name)
		case "hosts":
			hosts = v
		case "password":
			return nil, p.passwordErr(k, name)
		default:
			return nil, p.errorf(k, "pool %q: unknown key %q; a pool has user, identity_file, port and hosts", name, k.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	if hosts == nil || hosts.Kind != yaml.SequenceNode || len(hosts.Content) == 0 {
		at := n
		if hosts != nil {
			at = hosts
		}
		return nil, p.errorf(at, "pool %q: hosts must be a non-empty list of addresses or {ip, user, identity_file, port}", name)
	}
	seen := map[string]bool{}
	for _, hn := range hosts.Content {
		h, err := p.host(hn, name, d)
		if err != nil {
			return nil, err
		}
		if seen[h.Addr()] {
			return nil, p.errorf(hn, "pool %q: host %s is listed twice", name, h.Addr())
		}
		seen[h.Addr()] = true
		pool.Hosts = append(pool.Hosts, h)
	}
	return pool, nil
}

func (p poolParser) host(n *yaml.Node, pool string, d defaults) (Host, error) {
	h := Host{User: d.user, IdentityFile: d.identity, Port: d.port}
	switch n.Kind {
	case yaml.ScalarNode:
		h.IP = strings.TrimSpace(n.Value)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			var err error
			switch k.Value {
			case "ip":
				h.IP, err = p.str(v, pool, k.Value)
			case "user":
				h.User, err = p.str(v, pool, k.Value)
			case "identity_file":
				h.IdentityFile, err = p.str(v, pool, k.Value)
			case "port":
				h.Port, err = p.port(v, pool)
			case "password":
				return h, p.passwordErr(k, pool)
			case "use_ssh_config":
				return h, p.errorf(k, "pool %q: use_ssh_config is not supported yet; write the host's ip, user and identity_file here", pool)
			default:
				return h, p.errorf(k, "pool %q: unknown key %q; a host has ip, user, identity_file and port", pool, k.Value)
			}
			if err != nil {
				return h, err
			}
		}
	default:
		return h, p.errorf(n, "pool %q: a host is an address or a mapping with ip, user, identity_file and port", pool)
	}
	if h.IP == "" {
		return h, p.errorf(n, "pool %q: a host has no ip", pool)
	}
	if h.User == "" {
		return h, p.errorf(n, "pool %q: host %s has no user; set user for the pool or for the host", pool, h.IP)
	}
	if h.IdentityFile != "" {
		f, err := expandHome(h.IdentityFile)
		if err != nil {
			return h, p.errorf(n, "pool %q: %v", pool, err)
		}
		h.IdentityFile = f
	}
	return h, nil
}

func (p poolParser) str(v *yaml.Node, pool, key string) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", p.errorf(v, "pool %q: %s must be a string", pool, key)
	}
	return strings.TrimSpace(v.Value), nil
}

func (p poolParser) port(v *yaml.Node, pool string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v.Value))
	if v.Kind != yaml.ScalarNode || err != nil || n < 1 || n > 65535 {
		return 0, p.errorf(v, "pool %q: port must be a number from 1 to 65535", pool)
	}
	return n, nil
}

func (p poolParser) passwordErr(k *yaml.Node, pool string) error {
	return p.errorf(k, "pool %q: password authentication is not supported; give an identity_file (a passphrase-less key) or load the key into an ssh-agent and drop password", pool)
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
