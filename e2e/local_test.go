// Package e2e runs the real binaries end to end on local nodes.
package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/testenv"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const launchTask = `name: e2e
num_nodes: 3
workdir: ./code
envs:
  GREETING: hello world
file_mounts:
  ~/inputs/data.txt: ./data.txt
setup: |
  echo "setup on $SKYPILOT_SETUP_NODE_RANK of $SKYPILOT_NUM_NODES"
  echo ran >> ~/setup_count
run: |
  echo "rank=$SKYPILOT_NODE_RANK nodes=$SKYPILOT_NUM_NODES gpus=$SKYPILOT_NUM_GPUS_PER_NODE greeting=$GREETING"
  echo "ips=$(echo "$SKYPILOT_NODE_IPS" | tr '\n' ',')"
  echo "task=$SKYPILOT_TASK_ID"
  echo "code=$(cat code.txt) data=$(cat ~/inputs/data.txt) pwd=$(pwd)"
  echo "secret-sha=$(printf %s "$API_KEY" | sha256sum | cut -c1-16) on $SKYPILOT_NODE_RANK"
  echo "written by job 1" > produced.txt
`

const failTask = `name: fail
num_nodes: 3
run: |
  if [ "$SKYPILOT_NODE_RANK" = 1 ]; then sleep 0.5; exit 7; fi
  sleep 60
`

const okTask = `name: ok
num_nodes: 3
workdir: ./code
run: echo "second exec rank $SKYPILOT_NODE_RANK code=$(cat code.txt) kept=$(cat produced.txt)"
`

// TestLocalClusterEndToEnd launches a 3-node local cluster with the real
// binaries and checks what a user sees: per-rank variables, setup on every
// node, a failing rank failing the job, exec skipping setup, and down
// leaving no process and no directory.
func TestLocalClusterEndToEnd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("local nodes get their own 127.0.x.y address only on Linux")
	}
	cli := testenv.NewCLI(t)
	write(t, filepath.Join(cli.Dir, "code", "code.txt"), "v1")
	write(t, filepath.Join(cli.Dir, "code", "ignored.log"), "x")
	write(t, filepath.Join(cli.Dir, "code", ".gitignore"), "*.log\n")
	write(t, filepath.Join(cli.Dir, "data.txt"), "payload")
	write(t, filepath.Join(cli.Dir, "task.yaml"), launchTask)
	write(t, filepath.Join(cli.Dir, "fail.yaml"), failTask)
	write(t, filepath.Join(cli.Dir, "ok.yaml"), okTask)

	res := cli.Run("launch", "-y", "-c", "e2e", "--secret", "API_KEY=s3cr3t-value-42", "task.yaml")
	if res.Code != 0 {
		t.Fatalf("launch exited %d, want 0", res.Code)
	}
	out := res.Stdout
	sum := sha256.Sum256([]byte("s3cr3t-value-42"))
	secretSHA := hex.EncodeToString(sum[:])
	for _, want := range []string{"(setup pid=", "(head, rank=0, pid=", "(worker1, rank=1, pid=", "(worker2, rank=2, pid=",
		"rank=0 nodes=3 gpus=0 greeting=hello world", "rank=1 nodes=3", "rank=2 nodes=3",
		"code=v1 data=payload", "secret-sha=" + secretSHA[:16] + " on 2", "Job 1 SUCCEEDED"} {
		if !strings.Contains(out, want) {
			t.Errorf("launch output lacks %q", want)
		}
	}
	ips := regexp.MustCompile(`rank=0, pid=\d+\) ips=([^\n]*)`).FindStringSubmatch(out)
	if ips == nil {
		t.Fatalf("no ips line from rank 0")
	}
	list := strings.Split(strings.TrimSuffix(ips[1], ","), ",")
	if len(list) != 3 || list[0] == list[1] || list[1] == list[2] || list[0] == list[2] {
		t.Errorf("SKYPILOT_NODE_IPS = %q, want 3 distinct addresses", list)
	}
	if !regexp.MustCompile(`task=sky-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d-\d{6}_e2e_1`).MatchString(out) {
		t.Errorf("SKYPILOT_TASK_ID not in SkyPilot's format")
	}
	if !regexp.MustCompile(`pwd=\S+/node-0/home/sky_workdir`).MatchString(out) {
		t.Errorf("run did not start in ~/sky_workdir of its node")
	}

	// The secret reached the job but sits nowhere in plain text: not in the
	// coordinator's log, snapshots or its own log, not in the agents' logs.
	_ = filepath.Walk(cli.Home, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || strings.Contains(path, "sky_logs") || info.Size() > 64<<20 {
			return nil
		}
		if data, _ := os.ReadFile(path); strings.Contains(string(data), "s3cr3t-value-42") {
			t.Errorf("%s holds the secret in plain text", path)
		}
		return nil
	})

	clusterDir := filepath.Join(cli.Home, "local", "clusters", "e2e")
	for i := 0; i < 3; i++ {
		home := filepath.Join(clusterDir, "node-"+string(rune('0'+i)), "home")
		if _, err := os.Stat(filepath.Join(home, "sky_workdir", "ignored.log")); err == nil {
			t.Errorf("node %d got ignored.log despite .gitignore", i)
		}
		if got, _ := os.ReadFile(filepath.Join(home, "setup_count")); string(got) != "ran\n" {
			t.Errorf("node %d: setup ran %q, want once", i, got)
		}
	}

	// A failing rank fails the job; the others are killed and recorded 137.
	res = cli.Run("exec", "e2e", "fail.yaml")
	if res.Code == 0 {
		t.Errorf("exec of a failing task exited 0")
	}
	if !strings.Contains(res.Stdout, "Job 2 FAILED") {
		t.Errorf("exec output lacks the FAILED line")
	}
	if res.Took > 30*time.Second {
		t.Errorf("failing job took %s: the other ranks were not stopped", res.Took)
	}
	// A second exec works and still skips setup.
	write(t, filepath.Join(cli.Dir, "code", "code.txt"), "v2")
	res = cli.Run("exec", "e2e", "ok.yaml")
	if res.Code != 0 || !strings.Contains(res.Stdout, "second exec rank 2 code=v2 kept=written by job 1") {
		t.Errorf("second exec: exit %d, want 0 with the re-synced workdir and job 1's output kept", res.Code)
	}

	var jobs []api.Job
	res = cli.Run("queue", "e2e", "-o", "json")
	if err := json.Unmarshal([]byte(res.Stdout), &jobs); err != nil {
		t.Fatalf("queue -o json: %v", err)
	}
	type row struct {
		ID     int64
		Status api.JobStatus
		Codes  []int
	}
	var got []row
	for _, j := range jobs {
		got = append(got, row{j.ID, j.Status, j.ExitCodes})
	}
	want := []row{{3, api.JobSucceeded, []int{0, 0, 0}}, {2, api.JobFailed, []int{137, 7, 137}}, {1, api.JobSucceeded, []int{0, 0, 0}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("queue (-want +got):\n%s", diff)
	}
	for i := 0; i < 3; i++ {
		if got, _ := os.ReadFile(filepath.Join(clusterDir, "node-"+string(rune('0'+i)), "home", "setup_count")); string(got) != "ran\n" {
			t.Errorf("node %d: setup ran %q after exec, want once", i, got)
		}
	}

	// Cancel stops a running job's processes on every node.
	write(t, filepath.Join(cli.Dir, "long.yaml"), "num_nodes: 3\nrun: echo started; sleep 300\n")
	if res = cli.Run("exec", "-d", "e2e", "long.yaml"); res.Code != 0 {
		t.Fatalf("exec -d exited %d", res.Code)
	}
	testenv.Eventually(t, 20*time.Second, "job 4 running on every node", func() bool {
		return len(testenv.ProcessesWithEnvPrefix("SKY_COORD_JOB", clusterDir)) >= 3
	})
	if res = cli.Run("cancel", "e2e", "4"); res.Code != 0 || !strings.Contains(res.Stdout, "Cancelled job(s): 4") {
		t.Fatalf("cancel: exit %d", res.Code)
	}
	testenv.Eventually(t, 20*time.Second, "job 4's processes gone", func() bool {
		return len(testenv.ProcessesWithEnvPrefix("SKY_COORD_JOB", clusterDir)) == 0
	})

	var clusters []api.Cluster
	res = cli.Run("status", "-o", "json")
	if err := json.Unmarshal([]byte(res.Stdout), &clusters); err != nil {
		t.Fatalf("status -o json: %v", err)
	}
	if len(clusters) != 1 || clusters[0].Status != api.ClusterUp || clusters[0].NumNodes != 3 || clusters[0].HeadIP != list[0] {
		t.Errorf("status = %+v, want e2e UP with 3 nodes and head %s", clusters, list[0])
	}

	if pids := testenv.ProcessesWithEnvPrefix(api.MarkerEnv, clusterDir); len(pids) < 3 {
		t.Errorf("before down: %d processes of the cluster, want at least its 3 agents", len(pids))
	}
	res = cli.Run("down", "-y", "e2e")
	if res.Code != 0 {
		t.Fatalf("down exited %d", res.Code)
	}
	if pids := testenv.ProcessesWithEnvPrefix(api.MarkerEnv, clusterDir); len(pids) != 0 {
		t.Errorf("after down, processes %v of the cluster are still running", pids)
	}
	if _, err := os.Stat(clusterDir); !os.IsNotExist(err) {
		t.Errorf("after down, %s still exists (%v)", clusterDir, err)
	}
}

// TestAbsoluteFileMounts: local nodes share one filesystem, so /data
// would collide. As root each node gets a private view (a mount namespace
// per job process): each rank sees and writes its own copy, and down
// removes the mountpoints. Without root the launch is refused before
// anything is provisioned, with an error that says why and what to do.
func TestAbsoluteFileMounts(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("local nodes get their own 127.0.x.y address only on Linux")
	}
	cli := testenv.NewCLI(t)
	top := fmt.Sprintf("/skycoord-e2e-%d", os.Getpid())
	tmpTop := fmt.Sprintf("/tmp/skycoord-e2e-%d", os.Getpid())
	write(t, filepath.Join(cli.Dir, "data.txt"), "payload")
	write(t, filepath.Join(cli.Dir, "dir", "seed.txt"), "seed")
	write(t, filepath.Join(cli.Dir, "task.yaml"), fmt.Sprintf(`num_nodes: 2
file_mounts:
  %[1]s/in.txt: ./data.txt
  %[2]s/dir: ./dir
run: |
  echo "in=$(cat %[1]s/in.txt) seed=$(cat %[2]s/dir/seed.txt)"
  echo "rank $SKYPILOT_NODE_RANK" > %[2]s/dir/mine.txt
  sleep 1
  echo "mine=$(cat %[2]s/dir/mine.txt)"
`, top, tmpTop))
	res := cli.Run("launch", "-y", "-c", "abs", "task.yaml")
	if os.Geteuid() != 0 {
		if res.Code == 0 {
			t.Fatalf("launch with an absolute file_mounts destination exited 0 without root")
		}
		if !strings.Contains(res.Stderr, "needs root") || !strings.Contains(res.Stderr, "~/skycoord-e2e") {
			t.Errorf("error does not say why and what to do:\n%s", res.Stderr)
		}
		if _, err := os.Stat(filepath.Join(cli.Home, "local", "clusters", "abs")); !os.IsNotExist(err) {
			t.Errorf("a cluster directory was created: %v", err)
		}
		return
	}
	if res.Code != 0 {
		t.Fatalf("launch exited %d", res.Code)
	}
	for _, want := range []string{"rank=0, pid=", "in=payload seed=seed", "mine=rank 0", "mine=rank 1"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// On the machine itself the destination is only an empty mountpoint.
	if data, err := os.ReadFile(top + "/in.txt"); err != nil || len(data) != 0 {
		t.Errorf("host %s/in.txt = %q (%v), want an empty mountpoint", top, data, err)
	}
	if res := cli.Run("down", "-y", "abs"); res.Code != 0 {
		t.Fatalf("down exited %d", res.Code)
	}
	for _, p := range []string{top, tmpTop} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("after down, mountpoint %s still exists (%v)", p, err)
			_ = os.RemoveAll(p)
		}
	}
}

// TestLostHeadAgentFailsItsJobAndIsRestarted: when the head's agent dies
// mid-job, the job ends FAILED_DRIVER (its driver is gone), the agent is
// brought back, its orphaned processes are stopped, and the next job runs.
func TestLostHeadAgentFailsItsJobAndIsRestarted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("local nodes get their own 127.0.x.y address only on Linux")
	}
	cli := testenv.NewCLI(t)
	write(t, filepath.Join(cli.Dir, "long.yaml"), "num_nodes: 2\nrun: echo started; sleep 300\n")
	write(t, filepath.Join(cli.Dir, "ok.yaml"), "num_nodes: 2\nrun: echo fine on $SKYPILOT_NODE_RANK\n")
	if res := cli.Run("launch", "-y", "-d", "-c", "heal", "long.yaml"); res.Code != 0 {
		t.Fatalf("launch exited %d", res.Code)
	}
	clusterDir := filepath.Join(cli.Home, "local", "clusters", "heal")
	head := filepath.Join(clusterDir, "node-0", "home")
	testenv.Eventually(t, 20*time.Second, "the job running on both nodes", func() bool {
		return len(testenv.ProcessesWithEnvPrefix("SKY_COORD_JOB", clusterDir)) >= 2
	})
	agentPID := 0
	for _, pid := range testenv.ProcessesWithEnvPrefix(api.MarkerEnv, head) {
		if cmd, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline")); strings.Contains(string(cmd), "--rank\x000") {
			agentPID = pid
		}
	}
	if agentPID == 0 {
		t.Fatal("head agent process not found")
	}
	if err := syscall.Kill(agentPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "job 1 FAILED_DRIVER", func() bool {
		var jobs []api.Job
		res := cli.Run("queue", "heal", "-o", "json")
		return json.Unmarshal([]byte(res.Stdout), &jobs) == nil && len(jobs) == 1 && jobs[0].Status == api.JobFailedDriver
	})
	res := cli.Run("exec", "heal", "ok.yaml")
	if res.Code != 0 || !strings.Contains(res.Stdout, "fine on 0") {
		t.Fatalf("exec after the head agent came back: exit %d", res.Code)
	}
	testenv.Eventually(t, 10*time.Second, "the orphaned job processes stopped", func() bool {
		for _, pid := range testenv.ProcessesWithEnvPrefix("SKY_COORD_JOB", head) {
			if env, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ")); strings.Contains(string(env), "SKY_COORD_JOB="+head+"/1\x00") {
				return false
			}
		}
		return true
	})
}

// TestAbsoluteFileMountsWithoutRoot runs sky-coord as an ordinary user
// (nobody): where the kernel allows unprivileged user namespaces, each
// node still gets a private view, and the job runs as that user; a
// destination the user could not create is refused with the reason.
func TestAbsoluteFileMountsWithoutRoot(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("acting as another user (nobody) takes root; CI runs as root")
	}
	const nobody = 65534
	cli := testenv.NewCLIAs(t, nobody, nobody)
	dst := fmt.Sprintf("/tmp/skycoord-e2e-nobody-%d/dir", os.Getpid())
	cli.WriteFile("dir/seed.txt", "seed")
	cli.WriteFile("task.yaml", fmt.Sprintf(`num_nodes: 2
file_mounts:
  %[1]s: ./dir
run: |
  echo "uid=$(id -u) seed=$(cat %[1]s/seed.txt)"
  echo "rank $SKYPILOT_NODE_RANK" > %[1]s/mine.txt
  sleep 1
  echo "mine=$(cat %[1]s/mine.txt)"
`, dst))
	cli.WriteFile("root.yaml", "file_mounts:\n  /skycoord-e2e-needs-root/in.txt: ./dir/seed.txt\nrun: echo never\n")

	res := cli.Run("launch", "-y", "-c", "user", "task.yaml")
	if strings.Contains(res.Stderr, "unprivileged user namespaces (off on this machine)") {
		t.Skip("this kernel does not allow unprivileged user namespaces; the refusal is what a user sees")
	}
	if res.Code != 0 {
		t.Fatalf("launch as nobody exited %d", res.Code)
	}
	for _, want := range []string{"uid=65534 seed=seed", "mine=rank 0", "mine=rank 1"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	res = cli.Run("launch", "-y", "-c", "user2", "root.yaml")
	if res.Code == 0 || !strings.Contains(res.Stderr, "is not writable by this user") {
		t.Errorf("a mountpoint nobody cannot create: exit %d, want a refusal that says why", res.Code)
	}
	if res := cli.Run("down", "-y", "user"); res.Code != 0 {
		t.Fatalf("down exited %d", res.Code)
	}
	if _, err := os.Stat(filepath.Dir(dst)); !os.IsNotExist(err) {
		t.Errorf("after down, %s still exists (%v)", filepath.Dir(dst), err)
		_ = os.RemoveAll(filepath.Dir(dst))
	}
}
