package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/transfer"
)

// dumpVars writes the named variables, one "K=V" a line, to ~/<file>.
func dumpVars(file string, vars ...string) string {
	return fmt.Sprintf(`for v in %s; do echo "$v=${!v}"; done > ~/%s`, strings.Join(vars, " "), file)
}

func TestJobSetupAndRunOnThreeNodes(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	j := c.job(1, "", "")
	j.NumNodes = 2 // setup on all three, run on two
	j.Envs = map[string]string{"MY_VAR": "it's \"quoted\" $x", "MY_SECRET": "hunter2"}
	j.SecretNames = []string{"MY_SECRET"}
	j.Setup = dumpVars("setup_env", "MY_VAR", "MY_SECRET", "SKYPILOT_SETUP_NODE_RANK", "SKYPILOT_SETUP_NODE_IPS",
		"SKYPILOT_SETUP_NUM_GPUS_PER_NODE", "SKYPILOT_NUM_NODES", "SKYPILOT_TASK_ID", "SKYPILOT_CLUSTER_INFO",
		"SKYPILOT_USER", "SKYPILOT_NODE_RANK") + "\necho setup on $SKYPILOT_SETUP_NODE_RANK"
	j.Run = dumpVars("run_env", "MY_VAR", "SKYPILOT_NODE_RANK", "SKYPILOT_NODE_IPS", "SKYPILOT_NUM_NODES",
		"SKYPILOT_NUM_GPUS_PER_NODE", "SKYPILOT_TASK_ID", "SKYPILOT_CLUSTER_INFO", "SKYPILOT_USER",
		"SKYPILOT_INTERNAL_JOB_ID", "SKYPILOT_SETUP_NODE_RANK", "SKY_COORD_NODE", "SKY_COORD_JOB", "HOME",
		"PYTHONUNBUFFERED") + "\necho \"hello from $SKYPILOT_NODE_RANK in $PWD\""
	c.submit(j)
	evs := c.waitEnd(1)
	want := []api.JobEvent{
		{Cluster: "c1", JobID: 1, Status: api.JobSettingUp},
		{Cluster: "c1", JobID: 1, Status: api.JobRunning},
		{Cluster: "c1", JobID: 1, Status: api.JobSucceeded, ExitCodes: []int{0, 0}},
	}
	if diff := cmp.Diff(want, evs); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	info := j.ClusterInfo
	for i, ta := range c.agents {
		got := ta.readLog(t, "setup_env")
		wantSetup := fmt.Sprintf(`MY_VAR=it's "quoted" $x
MY_SECRET=hunter2
SKYPILOT_SETUP_NODE_RANK=%d
SKYPILOT_SETUP_NODE_IPS=10.0.0.1
10.0.0.2
10.0.0.3
SKYPILOT_SETUP_NUM_GPUS_PER_NODE=2
SKYPILOT_NUM_NODES=2
SKYPILOT_TASK_ID=sky-2026-01-02-03-04-05-000006_c1_1
SKYPILOT_CLUSTER_INFO=%s
SKYPILOT_USER=alice
SKYPILOT_NODE_RANK=
`, i, info)
		if diff := cmp.Diff(wantSetup, got); diff != "" {
			t.Errorf("node %d setup env (-want +got):\n%s", i, diff)
		}
		if got, want := ta.readLog(t, "sky_logs/1-test/tasks/setup.log"), fmt.Sprintf("setup on %d\n", i); got != want {
			t.Errorf("node %d setup.log = %q, want %q", i, got, want)
		}
		ents, _ := os.ReadDir(ta.home(".sky"))
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".sh") {
				t.Errorf("node %d: script %s left in ~/.sky", i, e.Name())
			}
		}
		if i == 2 {
			if _, err := os.Stat(ta.home("run_env")); err == nil {
				t.Errorf("node 2 ran the job's run, want setup only (num_nodes 2)")
			}
			continue
		}
		wantRun := fmt.Sprintf(`MY_VAR=it's "quoted" $x
SKYPILOT_NODE_RANK=%d
SKYPILOT_NODE_IPS=10.0.0.1
10.0.0.2
SKYPILOT_NUM_NODES=2
SKYPILOT_NUM_GPUS_PER_NODE=2
SKYPILOT_TASK_ID=sky-2026-01-02-03-04-05-000006_c1_1
SKYPILOT_CLUSTER_INFO=%s
SKYPILOT_USER=alice
SKYPILOT_INTERNAL_JOB_ID=1
SKYPILOT_SETUP_NODE_RANK=
SKY_COORD_NODE=%s
SKY_COORD_JOB=%s/1
HOME=%s
PYTHONUNBUFFERED=1
`, i, info, ta.cfg.Marker, ta.cfg.Marker, ta.cfg.Home)
		if diff := cmp.Diff(wantRun, ta.readLog(t, "run_env")); diff != "" {
			t.Errorf("node %d run env (-want +got):\n%s", i, diff)
		}
		logName := map[int]string{0: "0-head.log", 1: "1-worker1.log"}[i]
		wantLine := fmt.Sprintf("hello from %d in %s\n", i, ta.home("sky_workdir"))
		if got := ta.readLog(t, "sky_logs/1-test/tasks/"+logName); got != wantLine {
			t.Errorf("node %d %s = %q, want %q", i, logName, got, wantLine)
		}
	}
	// run.log on the head: every line behind its node's prefix.
	lines := strings.Split(strings.TrimSuffix(c.agents[0].readLog(t, "sky_logs/1-test/run.log"), "\n"), "\n")
	slices.Sort(lines)
	wantLines := []string{
		"(head, rank=0, pid=N) hello from 0 in " + c.agents[0].home("sky_workdir"),
		"(setup pid=N) setup on 0",
		"(setup pid=N, ip=10.0.0.2) setup on 1",
		"(setup pid=N, ip=10.0.0.3) setup on 2",
		"(worker1, rank=1, pid=N, ip=10.0.0.2) hello from 1 in " + c.agents[1].home("sky_workdir"),
	}
	if diff := cmp.Diff(wantLines, lines); diff != "" {
		t.Errorf("run.log lines, sorted (-want +got):\n%s", diff)
	}
	for _, ta := range c.agents {
		if strings.Contains(ta.log.String(), "hunter2") {
			t.Errorf("node %d: a secret's value is in the agent's log", ta.cfg.Rank)
		}
	}
}

func TestSingleNodeExecJob(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1)
	c.coord.mu.Lock()
	c.coord.failEvents = 2 // the first deliveries fail: retried, still in order
	c.coord.mu.Unlock()
	j := c.job(7, "", `printf 'a\r\nb\n'; printf 'x\ry\n'; printf 'no newline'`)
	j.TaskName = "train"
	c.submit(j)
	c.submit(j) // a retried submission is accepted once
	evs := c.waitEnd(7)
	if diff := cmp.Diff([]api.JobStatus{api.JobRunning, api.JobSucceeded}, statuses(evs)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	want := "(train, pid=N) a\n(train, pid=N) b\n(train, pid=N) x\ry\n(train, pid=N) no newline\n"
	if diff := cmp.Diff(want, c.agents[0].readLog(t, "sky_logs/7-test/run.log")); diff != "" {
		t.Errorf("run.log (-want +got):\n%s", diff)
	}
	if got, want := c.agents[0].readLog(t, "sky_logs/7-test/tasks/run.log"), "a\nb\nx\ry\nno newline"; got != want {
		t.Errorf("tasks/run.log = %q, want %q", got, want)
	}
}

func TestConcurrentJobs(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2)
	for id := int64(20); id < 23; id++ {
		c.submit(c.job(id, "sleep 0.1", "sleep 0.2; echo job $SKYPILOT_INTERNAL_JOB_ID"))
	}
	for id := int64(20); id < 23; id++ {
		evs := c.waitEnd(id)
		if diff := cmp.Diff([]api.JobStatus{api.JobSettingUp, api.JobRunning, api.JobSucceeded}, statuses(evs)); diff != "" {
			t.Errorf("job %d statuses (-want +got):\n%s", id, diff)
		}
		want := fmt.Sprintf("job %d\n", id)
		if got := c.agents[1].readLog(t, fmt.Sprintf("sky_logs/%d-test/tasks/1-worker1.log", id)); got != want {
			t.Errorf("job %d worker log = %q, want %q", id, got, want)
		}
	}
}

func TestRankFailureKillsTheGang(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	c.submit(c.job(2, "", `if [ "$SKYPILOT_NODE_RANK" = 1 ]; then sleep 0.3; echo bye; exit 3; fi; sleep 30`))
	start := time.Now()
	evs := c.waitEnd(2)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("job took %v to fail, want the others killed at once", d)
	}
	last := evs[len(evs)-1]
	msg := "Job 2 failed with return code list: [137, 3, 137] (A Worker failed with return code 3, sky-coord cleaned up the processes on other nodes with return code 137)"
	want := api.JobEvent{Cluster: "c1", JobID: 2, Status: api.JobFailed, ExitCodes: []int{137, 3, 137}, Message: msg}
	if diff := cmp.Diff(want, last); diff != "" {
		t.Errorf("final event (-want +got):\n%s", diff)
	}
	runLog := c.agents[0].readLog(t, "sky_logs/2-test/run.log")
	if !strings.HasSuffix(runLog, "(worker1, rank=1, pid=N, ip=10.0.0.2) bye\nERROR: "+msg+"\n") {
		t.Errorf("run.log = %q, want the worker's line then the ERROR line", runLog)
	}
	for _, ta := range c.agents {
		if ps := ta.jobProcs(2); len(ps) > 0 {
			t.Errorf("node %d: processes %v of job 2 left", ta.cfg.Rank, ps)
		}
	}
}

func TestSetupFailure(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	c.submit(c.job(3, `if [ "$SKYPILOT_SETUP_NODE_RANK" = 2 ]; then exit 5; fi`, "touch ~/ran"))
	evs := c.waitEnd(3)
	if diff := cmp.Diff([]api.JobStatus{api.JobSettingUp, api.JobFailedSetup}, statuses(evs)); diff != "" {
		t.Fatalf("statuses (-want +got):\n%s", diff)
	}
	last := evs[len(evs)-1]
	if diff := cmp.Diff([]int{0, 0, 5}, last.ExitCodes); diff != "" {
		t.Errorf("exit codes (-want +got):\n%s", diff)
	}
	msg := pidRE.ReplaceAllString(last.Message, "pid=N")
	if want := "Job 3's setup failed. Failed workers: (pid=N, returncode=5)"; msg != want {
		t.Errorf("message = %q, want %q", msg, want)
	}
	if got := c.agents[0].readLog(t, "sky_logs/3-test/run.log"); got != "ERROR: "+msg+"\n" {
		t.Errorf("run.log = %q", got)
	}
	for _, ta := range c.agents {
		if _, err := os.Stat(ta.home("ran")); err == nil {
			t.Errorf("node %d ran the job after its setup failed", ta.cfg.Rank)
		}
	}
}

func TestCancelKillsEveryNode(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	c.submit(c.job(4, "", "echo started; sleep 60"))
	waitFor(t, "job 4 running on every node", func() bool {
		for _, ta := range c.agents {
			if len(ta.jobProcs(4)) == 0 {
				return false
			}
		}
		return true
	})
	resp := c.do(0, http.MethodPost, "/v1/jobs/4/cancel", nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("cancel: %s", resp.Status)
	}
	evs := c.waitEnd(4)
	if diff := cmp.Diff([]api.JobStatus{api.JobRunning, api.JobCancelled}, statuses(evs)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	for _, ta := range c.agents {
		if ps := ta.jobProcs(4); len(ps) > 0 {
			t.Errorf("node %d: processes %v of job 4 left after cancel", ta.cfg.Rank, ps)
		}
	}
	if got := c.agents[0].readLog(t, "sky_logs/4-test/run.log"); !strings.HasSuffix(got, "Job 4 was cancelled; its processes were stopped on every node.\n") {
		t.Errorf("run.log = %q, want a cancel line at the end", got)
	}
	// Cancelling again is a no-op; an unknown job is 404.
	if resp := c.do(0, http.MethodPost, "/v1/jobs/4/cancel", nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("second cancel: %s", resp.Status)
	}
	if resp := c.do(0, http.MethodPost, "/v1/jobs/404/cancel", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("cancel unknown job: %s, want 404", resp.Status)
	}
}

func TestLogTailAndFollow(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1)
	ta := c.agents[0]
	c.submit(c.job(5, "", `for i in 1 2 3 4 5; do echo line$i; done
while [ ! -f ~/go ]; do sleep 0.02; done
echo line6; echo line7`))
	waitFor(t, "line5 in run.log", func() bool {
		b, _ := os.ReadFile(ta.home("sky_logs/5-test/run.log"))
		return bytes.Contains(b, []byte("line5"))
	})
	get := func(query string) string {
		resp := c.do(0, http.MethodGet, "/v1/jobs/5/log"+query, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("log%s: %s", query, resp.Status)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("log%s: %v", query, err)
		}
		return pidRE.ReplaceAllString(string(b), "pid=N")
	}
	if diff := cmp.Diff("(task, pid=N) line4\n(task, pid=N) line5\n", get("?tail=2")); diff != "" {
		t.Errorf("tail=2 (-want +got):\n%s", diff)
	}
	followed := make(chan string, 1)
	tailed := make(chan struct{})
	go func() {
		resp := c.do(0, http.MethodGet, "/v1/jobs/5/log?tail=1&follow=1", nil)
		// The tail's line first; only then may the job go on, or the
		// tail would be of the later lines.
		r := bufio.NewReader(resp.Body)
		first, _ := r.ReadString('\n')
		close(tailed)
		rest, _ := io.ReadAll(r)
		followed <- pidRE.ReplaceAllString(first+string(rest), "pid=N")
	}()
	select {
	case <-tailed:
	case <-time.After(15 * time.Second):
		t.Fatal("no tail from the followed log")
	}
	if err := os.WriteFile(ta.home("go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-followed:
		want := "(task, pid=N) line5\n(task, pid=N) line6\n(task, pid=N) line7\n"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("tail=1&follow=1 (-want +got):\n%s", diff)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("followed log did not end with the job")
	}
	if evs := c.waitEnd(5); evs[len(evs)-1].Status != api.JobSucceeded {
		t.Errorf("job 5 ended %s", evs[len(evs)-1].Status)
	}
	// A job the agent has no record of (from before a restart): what
	// exists is streamed and the stream ends, even with follow.
	if err := os.MkdirAll(ta.home("sky_logs/99-old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ta.home("sky_logs/99-old/run.log"), []byte("a\nb\nc"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp := c.do(0, http.MethodGet, "/v1/jobs/99/log?follow=1&tail=2", nil)
	if b, _ := io.ReadAll(resp.Body); string(b) != "b\nc" {
		t.Errorf("unknown job's log = %q, want %q", b, "b\nc")
	}
	if resp := c.do(0, http.MethodGet, "/v1/jobs/98/log", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("log of a job without run.log: %s, want 404", resp.Status)
	}
}

func TestSyncBlobs(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2)
	pack := func(files map[string]string) string {
		dir := t.TempDir()
		for name, data := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return c.coord.addTree(t, dir)
	}
	workdir := pack(map[string]string{"hello.txt": "hello\n", "debug.log": "no", ".gitignore": "*.log\n"})
	data := pack(map[string]string{"x": "from ~/data\n"})
	fileSrc := filepath.Join(t.TempDir(), "f.txt")
	if err := os.WriteFile(fileSrc, []byte("a file mount\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := c.coord.addTree(t, fileSrc)
	for _, ta := range c.agents { // what a job wrote in the workdir survives a sync, as with rsync
		if err := os.MkdirAll(ta.home("sky_workdir"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ta.home("sky_workdir/stale"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j := c.job(6, "", `cat hello.txt cfg/f.txt ~/data/x; ls -1`)
	// The file mount inside the workdir comes first: it must survive the
	// workdir's sync.
	j.Blobs = []api.BlobRef{{Digest: file, Dest: "cfg/f.txt", File: true}, {Digest: workdir, Dest: "~/sky_workdir"}, {Digest: data, Dest: "~/data"}}
	c.submit(j)
	if evs := c.waitEnd(6); evs[len(evs)-1].Status != api.JobSucceeded {
		t.Fatalf("job 6: %+v", evs)
	}
	for i, ta := range c.agents {
		logName := map[int]string{0: "0-head.log", 1: "1-worker1.log"}[i]
		want := "hello\na file mount\nfrom ~/data\ncfg\nhello.txt\nstale\n"
		if diff := cmp.Diff(want, ta.readLog(t, "sky_logs/6-test/tasks/"+logName)); diff != "" {
			t.Errorf("node %d output (-want +got):\n%s", i, diff)
		}
	}

	// A new version of the workdir alone: each node's own store keeps
	// what it holds and drops the chunks only the earlier trees needed.
	workdir2 := pack(map[string]string{"hello.txt": "hello again\n"})
	j = c.job(7, "", "cat hello.txt")
	j.Blobs = []api.BlobRef{{Digest: workdir2, Dest: "~/sky_workdir"}}
	c.submit(j)
	if evs := c.waitEnd(7); evs[len(evs)-1].Status != api.JobSucceeded {
		t.Fatalf("job 7: %+v", evs)
	}
	oldData := transfer.HashChunk([]byte("from ~/data\n"))
	newHello := transfer.HashChunk([]byte("hello again\n"))
	for i, ta := range c.agents {
		missing, err := ta.a.chunks.Missing(context.Background(), []transfer.ChunkID{oldData, newHello})
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) != 1 || missing[0] != oldData {
			t.Errorf("node %d: store misses %v; want only ~/data's old chunk gone, the new workdir's kept", i, missing)
		}
	}

	// A blob the coordinator lacks fails the job, naming the node.
	j = c.job(8, "echo never", "echo never")
	j.Blobs = []api.BlobRef{{Digest: strings.Repeat("ab", 32), Dest: "~/sky_workdir"}}
	c.submit(j)
	evs := c.waitEnd(8)
	last := evs[len(evs)-1]
	if last.Status != api.JobFailedSetup || !strings.Contains(last.Message, "node 0 (10.0.0.1)") || !strings.Contains(last.Message, "manifest") {
		t.Errorf("final event = %+v, want FAILED_SETUP naming node 0 and the missing manifest", last)
	}
}

func TestShutdownKillsJobs(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2)
	c.submit(c.job(9, "", "sleep 60"))
	waitFor(t, "job 9 running on both nodes", func() bool {
		return len(c.agents[0].jobProcs(9)) > 0 && len(c.agents[1].jobProcs(9)) > 0
	})
	if resp := c.do(0, http.MethodPost, "/v1/shutdown", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("shutdown: %s", resp.Status)
	}
	select {
	case err := <-c.agents[0].done:
		c.agents[0].done <- err // for the cleanup
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after /v1/shutdown")
	}
	for _, ta := range c.agents {
		if ps := ta.jobProcs(9); len(ps) > 0 {
			t.Errorf("node %d: processes %v of job 9 left after shutdown", ta.cfg.Rank, ps)
		}
	}
	evs := c.coord.jobEvents(9)
	if diff := cmp.Diff([]api.JobStatus{api.JobRunning, api.JobFailedDriver}, statuses(evs)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}
