package ssh

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadPools(t *testing.T) {
	home, _ := os.UserHomeDir()
	path := filepath.Join(t.TempDir(), PoolsFileName)
	const yamlText = `my-pool:
  user: ubuntu
  identity_file: ~/.ssh/id_ed25519
  hosts:
    - 10.0.0.5
    - ip: 10.0.0.6
      user: alice
      identity_file: ~/.ssh/alice
    - ip: 10.0.0.6
      port: 2222
lab/gpus:
  hosts:
    - ip: gpu1.lab
      user: bob
`
	if err := os.WriteFile(path, []byte(yamlText), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := LoadPools(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*Pool{
		"my-pool": {Name: "my-pool", Hosts: []Host{
			{IP: "10.0.0.5", Port: 22, User: "ubuntu", IdentityFile: filepath.Join(home, ".ssh/id_ed25519")},
			{IP: "10.0.0.6", Port: 22, User: "alice", IdentityFile: filepath.Join(home, ".ssh/alice")},
			{IP: "10.0.0.6", Port: 2222, User: "ubuntu", IdentityFile: filepath.Join(home, ".ssh/id_ed25519")},
		}},
		"lab/gpus": {Name: "lab/gpus", Hosts: []Host{{IP: "gpu1.lab", Port: 22, User: "bob"}}},
	}
	if diff := cmp.Diff(want, ps.ByName); diff != "" {
		t.Errorf("pools (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"my-pool", "lab/gpus"}, ps.Order); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}

	missing, err := LoadPools(filepath.Join(t.TempDir(), "none.yaml"))
	if err != nil || len(missing.Order) != 0 {
		t.Errorf("a missing file = %+v, %v; want no pools", missing, err)
	}
}

func TestLoadPoolsErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"password", "p:\n  user: u\n  password: hunter2\n  hosts: [10.0.0.1]\n", ":3:3: pool \"p\": password authentication is not supported"},
		{"host password", "p:\n  hosts:\n    - ip: 10.0.0.1\n      user: u\n      password: x\n", ":5:7: pool \"p\": password authentication is not supported"},
		{"no user", "p:\n  hosts:\n    - 10.0.0.1\n", ":3:7: pool \"p\": host 10.0.0.1 has no user; set user for the pool or for the host"},
		{"unknown key", "p:\n  user: u\n  hostz: [a]\n", ":3:3: pool \"p\": unknown key \"hostz\""},
		{"no hosts", "p:\n  user: u\n", "pool \"p\": hosts must be a non-empty list"},
		{"bad port", "p:\n  user: u\n  hosts:\n    - ip: a\n      port: 99999\n", ":5:13: pool \"p\": port must be a number"},
		{"duplicate", "p:\n  user: u\n  hosts: [a, a]\n", "host a:22 is listed twice"},
		{"ssh config", "p:\n  hosts:\n    - ip: a\n      use_ssh_config: true\n", "use_ssh_config is not supported yet"},
		{"not a mapping", "- a\n", ":1:1: want a mapping of pool names to pools"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), PoolsFileName)
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPools(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), path) {
				t.Errorf("err = %v, want %s%s…", err, path, tc.want)
			}
		})
	}
}
