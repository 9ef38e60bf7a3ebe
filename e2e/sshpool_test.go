package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sky-coord/sky-coord/testenv"
	"github.com/sky-coord/sky-coord/testenv/hosts"
)

func writePools(t *testing.T, cli *testenv.CLI, hs []*hosts.Host) {
	t.Helper()
	var b strings.Builder
	b.WriteString("lab:\n  hosts:\n")
	for _, h := range hs {
		fmt.Fprintf(&b, "    - ip: %s\n      user: %s\n      identity_file: %s\n", h.Addr, h.User, h.IdentityFile)
	}
	write(t, cli.Home+"/ssh_node_pools.yaml", b.String())
}

// TestSSHPoolRunsAMultiNodeTask launches a 3-node cluster on real OpenSSH
// hosts (network namespaces with their own addresses and users): the
// task's SKYPILOT_NODE_IPS are the hosts' addresses, down removes what
// sky-coord put there, a changed host key is refused until forgotten, and
// a dead host fails the launch naming it.
func TestSSHPoolRunsAMultiNodeTask(t *testing.T) {
	hs := hosts.New(t, 3) // skips with the reason when not root
	cli := testenv.NewCLI(t)
	writePools(t, cli, hs)
	cli.WriteFile("task.yaml", `num_nodes: 3
resources:
  infra: ssh/lab
run: |
  echo "rank=$SKYPILOT_NODE_RANK user=$(id -un) ips=$(echo $SKYPILOT_NODE_IPS | tr '\n' ' ')"
`)
	if res := cli.Run("check"); !strings.Contains(res.Stdout, "ssh: enabled") {
		t.Errorf("check does not show the pool:\n%s", res.Stdout)
	}
	res := cli.Run("launch", "-y", "-c", "lab", "task.yaml")
	if res.Code != 0 {
		t.Fatalf("launch exit %d", res.Code)
	}
	re := regexp.MustCompile(`rank=(\d) user=(\S+) ips=([0-9. ]+)`)
	var addrs []string
	for _, h := range hs {
		addrs = append(addrs, h.Addr)
	}
	seen := 0
	for _, m := range re.FindAllStringSubmatch(res.Stdout, -1) {
		seen++
		ips := strings.Fields(m[3])
		sorted := slices.Clone(ips)
		slices.Sort(sorted)
		want := slices.Clone(addrs)
		slices.Sort(want)
		if !slices.Equal(sorted, want) {
			t.Errorf("rank %s: SKYPILOT_NODE_IPS %v, want the hosts' addresses %v", m[1], ips, addrs)
		}
		if !strings.HasPrefix(m[2], "skyc-h") {
			t.Errorf("rank %s ran as %s, not the host's user", m[1], m[2])
		}
	}
	if seen != 3 {
		t.Fatalf("%d ranks reported, want 3:\n%s", seen, res.Stdout)
	}
	if res := cli.Run("ssh", "lab", "--node", "2", "--", "hostname -I"); res.Code != 0 || !strings.Contains(res.Stdout, "10.87.") {
		t.Errorf("ssh to node 2: exit %d: %q", res.Code, res.Stdout)
	}
	if res := cli.Run("down", "-y", "lab"); res.Code != 0 {
		t.Fatalf("down exit %d", res.Code)
	}
	for _, h := range hs {
		if out, _ := h.TryRun(t, "ls -a ~; pgrep -u $(id -u) -f sky-agent || true"); strings.Contains(out, ".sky-coord-agent") || strings.Contains(out, "sky_workdir") || strings.Contains(out, "sky-agent") {
			t.Errorf("after down, %s still has: %s", h.Addr, out)
		}
	}

	// A changed host key is refused until the user forgets the old one.
	hs[0].RotateHostKey(t)
	cli.WriteFile("one.yaml", "resources:\n  infra: ssh/lab\nrun: echo one\n")
	res = cli.Run("launch", "-y", "-c", "again", "one.yaml")
	if res.Code == 0 || !strings.Contains(res.Stdout+res.Stderr, "ssh-keys forget "+hs[0].Addr+":22") {
		t.Fatalf("launch after a host key change: exit %d; want a refusal that says how to accept it", res.Code)
	}
	if res := cli.Run("ssh-keys", "forget", hs[0].Addr); res.Code != 0 {
		t.Fatalf("ssh-keys forget exit %d", res.Code)
	}
	if res := cli.Run("down", "-y", "again"); res.Code != 0 {
		t.Fatalf("down after forgetting the key: exit %d", res.Code)
	}
	if res := cli.Run("launch", "-y", "-c", "again", "one.yaml"); res.Code != 0 || !strings.Contains(res.Stdout, "one") {
		t.Fatalf("launch after forgetting the key: exit %d", res.Code)
	}
	if res := cli.Run("down", "-y", "again"); res.Code != 0 {
		t.Fatalf("down exit %d", res.Code)
	}

	// A dead host fails the launch, naming it.
	hs[1].Kill(t)
	res = cli.Run("launch", "-y", "-c", "dead", "task.yaml")
	if res.Code == 0 || !strings.Contains(res.Stdout+res.Stderr, hs[1].Addr) {
		t.Fatalf("launch with a dead host: exit %d; want a failure naming %s", res.Code, hs[1].Addr)
	}
}
