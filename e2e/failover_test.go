package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/testenv"
)

const simRegions = `regions:
  local-a:
    price: 1.0
    zones:
      local-a-1: {capacity: 0}
      local-a-2: {fail: quota}
  local-b:
    price: 2.0
    zones:
      local-b-1: {capacity: %s}
`

const twoNodes = `num_nodes: 2
resources:
  infra: local
run: echo "rank $SKYPILOT_NODE_RANK ips $(echo $SKYPILOT_NODE_IPS | tr '\n' ' ')"
`

func writeSim(t *testing.T, cli *testenv.CLI, localB string) {
	t.Helper()
	write(t, filepath.Join(cli.Home, "local.yaml"), strings.Replace(simRegions, "%s", localB, 1))
}

// TestFailoverLandsInTheRegionWithCapacity launches on simulated regions:
// the cheap zone has no capacity, the next has no quota, and the launch
// lands in the dearer region that has room, printing each failed attempt.
func TestFailoverLandsInTheRegionWithCapacity(t *testing.T) {
	cli := testenv.NewCLI(t)
	writeSim(t, cli, "8")
	cli.WriteFile("task.yaml", twoNodes)

	dry := cli.Run("launch", "--dryrun", "-o", "json", "task.yaml")
	var plan struct {
		Plan []api.PlanEntry `json:"plan"`
	}
	if dry.Code != 0 || json.Unmarshal([]byte(dry.Stdout), &plan) != nil || len(plan.Plan) != 3 {
		t.Fatalf("dry run: exit %d, %d offers\n%s", dry.Code, len(plan.Plan), dry.Stdout)
	}
	if p := plan.Plan[0]; p.Cloud != "local" || p.Region != "local-a" || p.Zone != "local-a-1" || p.HourlyCost != 2 || p.NumNodes != 2 {
		t.Errorf("plan[0] = %+v; want local/local-a/local-a-1 at $2/hr for 2 nodes", p)
	}
	if _, err := os.Stat(filepath.Join(cli.Home, "local", "clusters")); err == nil {
		t.Error("the dry run provisioned something")
	}

	res := cli.Run("launch", "-y", "-c", "fo", "task.yaml")
	if res.Code != 0 {
		t.Fatalf("launch exit %d", res.Code)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`Attempt 1 failed on local/local-a/local-a-1: .*insufficient capacity.*Blocking zone local-a-1`),
		regexp.MustCompile(`Attempt 2 failed on local/local-a/local-a-2: .*quota exceeded.*Blocking region local-a`),
		regexp.MustCompile(`Attempt 3: launching 2x local on local/local-b/local-b-1`),
		regexp.MustCompile(`\(head, rank=0, pid=\d+\) rank 0 ips `),
	} {
		if !want.MatchString(res.Stdout) {
			t.Errorf("launch output lacks %q", want)
		}
	}
	var clusters []api.Cluster
	st := cli.Run("status", "-o", "json")
	if err := json.Unmarshal([]byte(st.Stdout), &clusters); err != nil || len(clusters) != 1 {
		t.Fatalf("status -o json: %v", err)
	}
	if c := clusters[0]; c.Infra != "local/local-b/local-b-1" || c.Region != "local-b" || c.Zone != "local-b-1" || len(c.Attempts) != 3 {
		t.Errorf("cluster infra %q region %q zone %q, %d attempts", c.Infra, c.Region, c.Zone, len(c.Attempts))
	}
	if res := cli.Run("down", "-y", "fo"); res.Code != 0 {
		t.Fatalf("down exit %d", res.Code)
	}
	if left, _ := os.ReadDir(filepath.Join(cli.Home, "local", "clusters")); len(left) != 0 {
		t.Errorf("down left %d cluster directories", len(left))
	}
}

// TestFailoverExhaustedPrintsEveryAttempt: no zone can take the cluster,
// so the launch fails with the attempts table; with --retry-until-up it
// keeps trying and lands once capacity appears.
func TestFailoverExhaustedPrintsEveryAttempt(t *testing.T) {
	cli := testenv.NewCLI(t)
	cli.Env = []string{"SKY_COORD_RETRY_GAP=300ms"}
	writeSim(t, cli, "1")
	cli.WriteFile("task.yaml", twoNodes)

	res := cli.Run("launch", "-y", "-c", "full", "task.yaml")
	if res.Code == 0 {
		t.Fatal("launch succeeded with no capacity anywhere")
	}
	table := regexp.MustCompile(`(?s)INFRA +RESOURCES +REASON\n` +
		`local/local-a/local-a-1 +2x local +.*insufficient capacity.*\n` +
		`local/local-a/local-a-2 +2x local +.*quota exceeded.*\n` +
		`local/local-b/local-b-1 +2x local +.*insufficient capacity: .*1 more|.*insufficient capacity`)
	if !table.MatchString(res.Stderr) {
		t.Errorf("no attempts table in the error:\n%s", res.Stderr)
	}
	if n := strings.Count(res.Stdout+res.Stderr, "RESOURCES  REASON"); n != 1 {
		t.Errorf("the attempts table is printed %d times", n)
	}
	if res.Took > 3*time.Second {
		t.Errorf("the failed launch took %s to report", res.Took)
	}
	cli.Run("down", "-y", "full")

	// --retry-until-up: the first rounds fail; once local-b has room, the
	// launch lands there.
	done := make(chan testenv.Result, 1)
	go func() { done <- cli.Run("launch", "-y", "-r", "-c", "patient", "task.yaml") }()
	testenv.Eventually(t, 60e9, "a second round of attempts", func() bool {
		c := cli.Run("status", "-o", "json")
		var cs []api.Cluster
		json.Unmarshal([]byte(c.Stdout), &cs)
		return len(cs) == 1 && cs[0].Round >= 2
	})
	writeSim(t, cli, "8")
	res = <-done
	if res.Code != 0 || !strings.Contains(res.Stdout, "retrying in") || !strings.Contains(res.Stdout, "(head, rank=0") {
		t.Fatalf("--retry-until-up: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestNoOfferIsABadRequest: a task no offer fits fails before anything is
// recorded, with the counts that exist.
func TestNoOfferIsABadRequest(t *testing.T) {
	cli := testenv.NewCLI(t)
	cli.WriteFile("gpu.yaml", "resources:\n  accelerators: A100:3\nrun: nvidia-smi\n")
	res := cli.Run("launch", "--dryrun", "gpu.yaml")
	if res.Code != 2 || !strings.Contains(res.Stderr, `no offer for "A100:3"; available counts: 1, 2, 4, 8`) {
		t.Errorf("A100:3: exit %d: %s", res.Code, res.Stderr)
	}
	cli.WriteFile("v100.yaml", "resources:\n  accelerators: V100:1\nrun: nvidia-smi\n")
	res = cli.Run("launch", "-y", "v100.yaml")
	if res.Code != 2 || !strings.Contains(res.Stderr, "V100:1 is offered only on aws, which is not enabled here") {
		t.Errorf("V100 without credentials: exit %d: %s", res.Code, res.Stderr)
	}
	if st := cli.Run("status"); !strings.Contains(st.Stdout, "No existing clusters") {
		t.Errorf("a rejected launch left a cluster:\n%s", st.Stdout)
	}
	res = cli.Run("launch", "--dryrun", "-o", "json", "v100.yaml")
	if res.Code != 0 || !strings.Contains(res.Stdout, `"instance_type": "p3.2xlarge"`) {
		t.Errorf("dry run of V100 without credentials: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
}
