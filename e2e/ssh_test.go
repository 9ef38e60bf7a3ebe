package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sky-coord/sky-coord/testenv"
)

// TestSSHRunsOnTheNamedNode runs commands on a 2-node cluster's nodes
// through `sky-coord ssh`, with the remote exit code as its own.
func TestSSHRunsOnTheNamedNode(t *testing.T) {
	cli := testenv.NewCLI(t)
	cli.WriteFile("task.yaml", "num_nodes: 2\nrun: echo up\n")
	if res := cli.Run("launch", "-y", "-c", "box", "task.yaml"); res.Code != 0 {
		t.Fatalf("launch exit %d", res.Code)
	}
	res := cli.Run("ssh", "box", "--", "echo home=$HOME; tty; exit 3")
	node0 := filepath.Join(cli.Home, "local", "clusters", "box", "node-0", "home")
	if res.Code != 3 || !strings.Contains(res.Stdout, "home="+node0) || !strings.Contains(res.Stdout, "/dev/pts/") {
		t.Errorf("ssh head: exit %d, output %q", res.Code, res.Stdout)
	}
	res = cli.Run("ssh", "box", "--node", "1", "--", "echo", "home=$HOME")
	node1 := filepath.Join(cli.Home, "local", "clusters", "box", "node-1", "home")
	if res.Code != 0 || !strings.Contains(res.Stdout, "home="+node1) {
		t.Errorf("ssh --node 1: exit %d, output %q", res.Code, res.Stdout)
	}
	if res := cli.Run("ssh", "box", "--node", "2", "--", "true"); res.Code == 0 || !strings.Contains(res.Stderr, "has nodes 0 to 1; there is no node 2") {
		t.Errorf("ssh --node 2: exit %d: %s", res.Code, res.Stderr)
	}
	if res := cli.Run("ssh", "nothere"); res.Code == 0 || !strings.Contains(res.Stderr, `cluster "nothere" does not exist`) {
		t.Errorf("ssh to a missing cluster: exit %d: %s", res.Code, res.Stderr)
	}
}
