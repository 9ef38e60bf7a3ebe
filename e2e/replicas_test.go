package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/testenv"
)

// replicaSet is three replicas for one test's CLI.
type replicaSet struct {
	*testenv.Replicas
	t   *testing.T
	cli *testenv.CLI
}

func (rs *replicaSet) start(i int) {
	rs.t.Helper()
	if err := rs.Start(i); err != nil {
		rs.t.Fatal(err)
	}
}

// members reads the membership through the CLI (`server members -o
// json`), from any replica SKY_COORD_ADDR names.
func (rs *replicaSet) members() []api.Member {
	res := rs.cli.Run("server", "members", "-o", "json")
	var ms []api.Member
	_ = json.Unmarshal([]byte(res.Stdout), &ms)
	return ms
}

func (rs *replicaSet) leader() int { return rs.LeaderIn(rs.members()) }

// TestThreeReplicasSurviveTheirLeader runs three `sky-coord server`
// replicas: they elect a leader; a job keeps running and its result is
// recorded once after the leader is SIGKILLed; the survivors serve writes
// within seconds; a 2-node launch leaves exactly 2 instances; and a
// restart of all three from disk keeps the state.
func TestThreeReplicasSurviveTheirLeader(t *testing.T) {
	cli := testenv.NewCLI(t)
	rs := newReplicaSet(t, cli)
	cli.WriteFile("long.yaml", "num_nodes: 2\nrun: echo start $SKYPILOT_NODE_RANK; sleep 3; echo done $SKYPILOT_NODE_RANK\n")
	cli.WriteFile("short.yaml", "num_nodes: 2\nrun: echo short $SKYPILOT_NODE_RANK\n")
	if res := cli.Run("launch", "-y", "-d", "-c", "ha", "long.yaml"); res.Code != 0 {
		t.Fatalf("launch exit %d", res.Code)
	}
	testenv.Eventually(t, 30*time.Second, "job 1 running", func() bool {
		return strings.Contains(cli.Run("queue", "ha").Stdout, "RUNNING")
	})
	old := rs.leader()
	killed := time.Now()
	rs.Kill(old)
	testenv.Eventually(t, 10*time.Second, "a new leader", func() bool { return rs.leader() >= 0 })
	t.Logf("new leader after %s", time.Since(killed).Round(time.Millisecond))
	res := cli.Run("exec", "ha", "short.yaml")
	if res.Code != 0 || strings.Count(res.Stdout, "short ") != 2 {
		t.Fatalf("exec after the leader died: exit %d", res.Code)
	}
	testenv.Eventually(t, 30*time.Second, "job 1 SUCCEEDED", func() bool {
		var jobs []api.Job
		_ = json.Unmarshal([]byte(cli.Run("queue", "ha", "-o", "json").Stdout), &jobs)
		for _, j := range jobs {
			if j.ID == 1 {
				return j.Status == api.JobSucceeded
			}
		}
		return false
	})
	if n := localInstances(cli.Home, "ha"); n != 2 {
		t.Errorf("%d instances exist for a 2-node cluster, want exactly 2", n)
	}

	// Stop all three and start them again from disk: same state.
	for i := range 3 {
		rs.Kill(i)
	}
	for i := range 3 {
		rs.start(i)
	}
	testenv.Eventually(t, 30*time.Second, "a leader after the restart", func() bool { return rs.leader() >= 0 })
	st := cli.Run("queue", "ha", "-o", "json")
	var jobs []api.Job
	if err := json.Unmarshal([]byte(st.Stdout), &jobs); err != nil || len(jobs) != 2 {
		t.Fatalf("after a restart from disk: %d jobs (%v), want 2", len(jobs), err)
	}
	if res := cli.Run("down", "-y", "ha"); res.Code != 0 {
		t.Fatalf("down exit %d", res.Code)
	}
	if left, _ := os.ReadDir(filepath.Join(cli.Home, "local", "clusters")); len(left) != 0 {
		t.Errorf("down left %d cluster directories", len(left))
	}
	// The API token appears in no log, Raft log or state file: only in
	// its own file.
	tok, err := os.ReadFile(filepath.Join(cli.Home, "token"))
	if err != nil || len(strings.TrimSpace(string(tok))) < 16 {
		t.Fatalf("token file: %v", err)
	}
	_ = filepath.WalkDir(cli.Home, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == filepath.Join(cli.Home, "token") {
			return nil
		}
		if data, err := os.ReadFile(p); err == nil && strings.Contains(string(data), strings.TrimSpace(string(tok))) {
			t.Errorf("the API token is in %s", p)
		}
		return nil
	})
}

// newReplicaSet starts three replicas for cli (with env) and waits for a
// leader; they are killed at cleanup after every cluster is down.
func newReplicaSet(t *testing.T, cli *testenv.CLI, env ...string) *replicaSet {
	t.Helper()
	r, err := testenv.NewReplicas(cli.Bin, cli.Home, 3, env...)
	if err != nil {
		t.Fatal(err)
	}
	rs := &replicaSet{Replicas: r, t: t, cli: cli}
	cli.Env = []string{"SKY_COORD_ADDR=" + strings.Join(rs.Addrs, ",")}
	for i := range 3 {
		rs.start(i)
	}
	t.Cleanup(func() {
		cli.Run("down", "-a", "-y")
		for i := range 3 {
			rs.Kill(i)
		}
	})
	testenv.Eventually(t, 30*time.Second, "a leader among 3 replicas", func() bool {
		return len(rs.members()) == 3 && rs.leader() >= 0
	})
	return rs
}

// statusOn reads a cluster's status from one replica only.
func (rs *replicaSet) statusOn(i int, cluster string) string {
	c := exec.Command(rs.cli.Bin, "status", "-o", "json", cluster)
	c.Env = append(os.Environ(), "SKY_COORD_HOME="+rs.cli.Home, "SKY_COORD_ADDR="+rs.Addrs[i])
	out, err := c.Output()
	if err != nil {
		return ""
	}
	var cs []api.Cluster
	if json.Unmarshal(out, &cs) != nil || len(cs) != 1 {
		return ""
	}
	return string(cs[0].Status)
}

// TestLeaderKilledAtEachLaunchStep kills the leader at each step of a
// 2-node launch (right after the submit, while provisioning, while
// bootstrapping, while the job runs; the fault-test pause holds the
// leader at a step): the job still ends SUCCEEDED, once; every live
// replica reports the cluster UP; exactly 2 instances exist; down leaves
// none.
func TestLeaderKilledAtEachLaunchStep(t *testing.T) {
	steps := []struct {
		name, pause, waitFor string
	}{
		{"submit", "", ""},
		{"provision", "provision=2s", "Attempt 1: launching"},
		{"bootstrap", "bootstrap=2s", "Provisioned 2 node(s)"},
		{"run", "", "RUNNING"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			cli := testenv.NewCLI(t)
			var env []string
			if st.pause != "" {
				env = append(env, "SKY_COORD_FAULT_PAUSE="+st.pause)
			}
			rs := newReplicaSet(t, cli, env...)
			cli.WriteFile("task.yaml", "num_nodes: 2\nrun: echo start $SKYPILOT_NODE_RANK; sleep 2; echo done $SKYPILOT_NODE_RANK\n")
			// launch waits for the cluster to be UP: run it beside the
			// test, which kills the leader meanwhile. Its own answer may
			// be an error (its replica may be the one killed).
			launched := make(chan testenv.Result, 1)
			go func() { launched <- cli.Run("launch", "-y", "-d", "-c", "mid", "task.yaml") }()
			if st.name == "submit" || st.name == "run" {
				if res := <-launched; res.Code != 0 {
					t.Fatalf("launch exit %d", res.Code)
				}
			}
			switch st.waitFor {
			case "":
			case "RUNNING":
				testenv.Eventually(t, 30*time.Second, "the job running", func() bool {
					return strings.Contains(cli.Run("queue", "mid").Stdout, "RUNNING")
				})
			default:
				testenv.Eventually(t, 30*time.Second, st.waitFor, func() bool {
					var cs []api.Cluster
					_ = json.Unmarshal([]byte(cli.Run("status", "-o", "json").Stdout), &cs)
					return len(cs) == 1 && strings.Contains(cs[0].LastEvent, st.waitFor)
				})
			}
			rs.Kill(rs.leader())
			testenv.Eventually(t, 60*time.Second, "job 1 SUCCEEDED", func() bool {
				var jobs []api.Job
				_ = json.Unmarshal([]byte(cli.Run("queue", "mid", "-o", "json").Stdout), &jobs)
				return len(jobs) == 1 && jobs[0].Status == api.JobSucceeded
			})
			for i := range 3 {
				if rs.Procs[i] == nil {
					continue
				}
				testenv.Eventually(t, 10*time.Second, fmt.Sprintf("replica %d to report the cluster UP", i), func() bool {
					return rs.statusOn(i, "mid") == string(api.ClusterUp)
				})
			}
			if n := localInstances(cli.Home, "mid"); n != 2 {
				t.Errorf("%d instances for a 2-node cluster, want exactly 2", n)
			}
			if res := cli.Run("down", "-y", "mid"); res.Code != 0 {
				t.Fatalf("down exit %d", res.Code)
			}
			if left, _ := os.ReadDir(filepath.Join(cli.Home, "local", "clusters")); len(left) != 0 {
				t.Errorf("down left %d cluster directories", len(left))
			}
		})
	}
}

// TestCutOffReplicaCatchesUp freezes a follower (SIGSTOP: it neither
// answers nor votes, as if cut off), launches through the other two, then
// thaws it: it catches up and reports the same state.
func TestCutOffReplicaCatchesUp(t *testing.T) {
	cli := testenv.NewCLI(t)
	rs := newReplicaSet(t, cli)
	leader := rs.leader()
	// Freeze the follower with the lowest address: agents report to it
	// first, the worst case.
	follower := -1
	for i, a := range rs.Addrs {
		if i != leader && (follower < 0 || a < rs.Addrs[follower]) {
			follower = i
		}
	}
	if err := rs.Procs[follower].Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = rs.Procs[follower].Process.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)
	other := 3 - leader - follower
	cli.Env = []string{"SKY_COORD_ADDR=" + rs.Addrs[leader] + "," + rs.Addrs[other]}
	cli.WriteFile("one.yaml", "run: echo while one replica was cut off\n")
	if res := cli.Run("launch", "-y", "-c", "cut", "one.yaml"); res.Code != 0 {
		t.Fatalf("launch with one replica cut off: exit %d", res.Code)
	}
	thaw()
	testenv.Eventually(t, 20*time.Second, "the healed replica to catch up", func() bool {
		return rs.statusOn(follower, "cut") == string(api.ClusterUp)
	})
	cli.Env = []string{"SKY_COORD_ADDR=" + strings.Join(rs.Addrs, ",")}
}

// localInstances counts the local provider's instances of a cluster: its
// node-N directories (the cluster's directory also holds the chunk store
// its nodes share).
func localInstances(home, cluster string) int {
	entries, _ := os.ReadDir(filepath.Join(home, "local", "clusters", cluster))
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "node-") {
			n++
		}
	}
	return n
}
