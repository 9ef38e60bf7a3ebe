package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/testenv"
)

// TestAutostop: a cluster launched with -i 0 stops once its job ends; an
// autostop with --down tears it down.
func TestAutostop(t *testing.T) {
	cli := testenv.NewCLI(t)
	cli.WriteFile("task.yaml", "num_nodes: 2\nrun: echo working; sleep 1\n")
	if res := cli.Run("launch", "-y", "-i", "0", "-c", "idle", "task.yaml"); res.Code != 0 {
		t.Fatalf("launch exit %d", res.Code)
	}
	testenv.Eventually(t, 30*time.Second, "the idle cluster to stop", func() bool {
		return strings.Contains(cli.Run("status").Stdout, "STOPPED")
	})
	if res := cli.Run("autostop", "idle", "--cancel"); res.Code != 0 {
		t.Fatalf("autostop --cancel exit %d", res.Code)
	}
	if res := cli.Run("start", "idle"); res.Code != 0 {
		t.Fatalf("start exit %d", res.Code)
	}
	if res := cli.Run("autostop", "idle", "-i", "0", "--down"); res.Code != 0 {
		t.Fatalf("autostop exit %d", res.Code)
	}
	testenv.Eventually(t, 30*time.Second, "the idle cluster to be torn down", func() bool {
		return strings.Contains(cli.Run("status").Stdout, "No existing clusters")
	})
}
