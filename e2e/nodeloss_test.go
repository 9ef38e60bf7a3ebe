package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/testenv"
)

// TestLocalKillFailsTheJobByNameAndStartRepairs kills a worker of a 4-node
// cluster during a long job, as a preemption would: the job ends FAILED
// within 15 s naming the node, the cluster shows INIT, and start brings
// the node back so the next job runs on all four.
func TestLocalKillFailsTheJobByNameAndStartRepairs(t *testing.T) {
	cli := testenv.NewCLI(t)
	cli.WriteFile("long.yaml", "num_nodes: 4\nrun: echo rank $SKYPILOT_NODE_RANK up; sleep 600\n")
	cli.WriteFile("short.yaml", "num_nodes: 4\nrun: echo back $SKYPILOT_NODE_RANK\n")
	if res := cli.Run("launch", "-y", "-d", "-c", "pre", "long.yaml"); res.Code != 0 {
		t.Fatalf("launch exit %d", res.Code)
	}
	testenv.Eventually(t, 30*time.Second, "the job to run on every node", func() bool {
		res := cli.Run("logs", "--no-follow", "pre", "1")
		return strings.Count(res.Stdout, " up") == 4
	})
	killed := time.Now()
	if res := cli.Run("local", "kill", "pre", "--node", "2"); res.Code != 0 {
		t.Fatalf("local kill exit %d", res.Code)
	}
	var job api.Job
	testenv.Eventually(t, 20*time.Second, "job 1 to end", func() bool {
		res := cli.Run("queue", "pre", "-o", "json")
		var jobs []api.Job
		if json.Unmarshal([]byte(res.Stdout), &jobs) != nil || len(jobs) == 0 {
			return false
		}
		job = jobs[0]
		return job.Status.Terminal()
	})
	took := time.Since(killed)
	if job.Status != api.JobFailed || !strings.Contains(job.Message, "node 2 (") {
		t.Errorf("job 1 ended %s: %q; want FAILED naming node 2", job.Status, job.Message)
	}
	if took > 15*time.Second {
		t.Errorf("job 1 took %s to fail after the kill; want under 15 s", took)
	}
	testenv.Eventually(t, 20*time.Second, "the cluster to show INIT with node 2 lost", func() bool {
		return strings.Contains(cli.Run("status").Stdout, "INIT (node 2 lost)")
	})
	if res := cli.Run("start", "pre"); res.Code != 0 {
		t.Fatalf("start exit %d", res.Code)
	}
	testenv.Eventually(t, 30*time.Second, "the cluster to be UP again", func() bool {
		return strings.Contains(cli.Run("status").Stdout, " UP ")
	})
	res := cli.Run("exec", "pre", "short.yaml")
	if res.Code != 0 || strings.Count(res.Stdout, "back ") != 4 {
		t.Errorf("exec after start: exit %d\n%s", res.Code, res.Stdout)
	}
}
