package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/client"
	"github.com/sky-coord/sky-coord/spec"
)

// env runs the sky-coord CLI with its own home and working directory; the
// first launch starts the coordinator, which cleanup stops.
type env struct {
	bin  string
	home string
	dir  string
}

// newEnv makes the home and task directory the launch and exec sections
// share; they are removed, with every cluster and the coordinator, at the
// run's cleanup.
func newEnv(bin string) *env {
	home, err := os.MkdirTemp("", "sky-coord-bench-home-")
	if err != nil {
		die(err)
	}
	dir, err := os.MkdirTemp("", "sky-coord-bench-dir-")
	if err != nil {
		_ = os.RemoveAll(home)
		die(err)
	}
	e := &env{bin: bin, home: home, dir: dir}
	atCleanup(func() {
		_ = e.cmd("down", "-a", "-y").Run()
		_ = e.cmd("server", "stop").Run()
		_ = os.RemoveAll(home)
		_ = os.RemoveAll(dir)
	})
	task := "num_nodes: 4\nrun: echo first output from rank $SKYPILOT_NODE_RANK\n"
	if err := os.WriteFile(filepath.Join(dir, "task.yaml"), []byte(task), 0o644); err != nil {
		die(err)
	}
	return e
}

func (e *env) cmd(args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(e.bin, "sky-coord"), args...)
	c.Dir = e.dir
	c.Env = append(os.Environ(), "SKY_COORD_HOME="+e.home, "NO_COLOR=1")
	return c
}

func (e *env) run(args ...string) {
	out, err := e.cmd(args...).CombinedOutput()
	if err != nil {
		die("sky-coord %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// firstOutput runs launch and returns the time until the first line of
// job output (a line with a rank prefix) appears on its stdout.
func (e *env) firstOutput(args ...string) time.Duration {
	c := e.cmd(args...)
	c.Stderr = os.Stderr
	out, err := c.StdoutPipe()
	if err != nil {
		die(err)
	}
	start := time.Now()
	if err := c.Start(); err != nil {
		die(err)
	}
	var took time.Duration
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if took == 0 && strings.HasPrefix(sc.Text(), "(head, rank=0") {
			took = time.Since(start)
		}
	}
	if err := c.Wait(); err != nil {
		die("launch: %v", err)
	}
	if took == 0 {
		die("launch printed no job output")
	}
	return took
}

// launchSection: launch → first output, 4 nodes. The first launch also
// starts the coordinator; the rest reuse it.
func launchSection(ctx context.Context, e *env) string {
	var cold time.Duration
	var warm []time.Duration
	for i := 0; i < 6; i++ {
		stopIfDone(ctx)
		name := fmt.Sprintf("bench-launch-%d", i)
		d := e.firstOutput("launch", "-y", "-c", name, "task.yaml")
		if i == 0 {
			cold = d
		} else {
			warm = append(warm, d)
		}
		e.run("down", "-y", name)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Launch → first output, 4 local nodes\n\n")
	fmt.Fprintf(&b, "| case | sky-coord | goal | SkyPilot (published) | ratio to goal |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| first call (starts the coordinator) | %s | ≤ 2 s | 73–164 s on a cloud VM (runtime setup 30–40%%) | %.3f |\n", ms(cold), cold.Seconds()/2)
	fmt.Fprintf(&b, "| coordinator running, p50 of %d | %s | ≤ 2 s | | %.3f |\n", len(warm), ms(percentile(warm, 0.5)), percentile(warm, 0.5).Seconds()/2)
	fmt.Fprintf(&b, "| coordinator running, max | %s | ≤ 2 s | | %.3f |\n\n", ms(percentile(warm, 1)), percentile(warm, 1).Seconds()/2)
	return b.String()
}

// execSection: exec submit → RUNNING on an UP 4-node cluster, through the
// API, beside the floor of starting one process on each of 4 nodes here.
func execSection(ctx context.Context, e *env, runs int) string {
	stopIfDone(ctx)
	e.run("launch", "-y", "-c", "bench-exec", "task.yaml")
	c := connect(e.home)
	t := &spec.Task{NumNodes: 4, Run: "true"}
	var lat []time.Duration
	for i := 0; i < runs; i++ {
		stopIfDone(ctx)
		start := time.Now()
		resp, err := c.Exec(ctx, "bench-exec", api.ExecRequest{Task: t, User: "bench"})
		if err != nil {
			die(err)
		}
		var j *api.Job
		for {
			j, err = c.Job(ctx, "bench-exec", resp.JobID)
			if err != nil {
				die(err)
			}
			if j.Status.Terminal() {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if j.Status != api.JobSucceeded || j.StartedAt == nil {
			die("exec job %d ended %s", j.ID, j.Status)
		}
		lat = append(lat, j.StartedAt.Sub(start))
	}
	// The CLI round trip (process start, connect, submit) with -d.
	var cliLat []time.Duration
	for i := 0; i < 20; i++ {
		stopIfDone(ctx)
		start := time.Now()
		e.run("exec", "-d", "bench-exec", "task.yaml")
		cliLat = append(cliLat, time.Since(start))
	}
	e.run("down", "-y", "bench-exec")

	// Same-run reference: fork+exec of `bash -c true` ×4 in parallel.
	var floor []time.Duration
	for i := 0; i < runs; i++ {
		start := time.Now()
		var cmds []*exec.Cmd
		for n := 0; n < 4; n++ {
			cmd := exec.Command("bash", "-c", "true")
			if err := cmd.Start(); err != nil {
				die(err)
			}
			cmds = append(cmds, cmd)
		}
		for _, cmd := range cmds {
			_ = cmd.Wait()
		}
		floor = append(floor, time.Since(start))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## exec: submit → RUNNING on an UP 4-node cluster (%d jobs)\n\n", len(lat))
	fmt.Fprintf(&b, "| measure | p50 | p99 | goal p50 / p99 | same-run floor: 4 × fork+exec `bash -c true`, p50 / p99 | p50 ratio to floor |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| API submit → RUNNING recorded | %s | %s | ≤ 100 ms / ≤ 300 ms | %s / %s | %.1f× |\n",
		ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(percentile(floor, 0.5)), ms(percentile(floor, 0.99)),
		float64(percentile(lat, 0.5))/float64(percentile(floor, 0.5)))
	fmt.Fprintf(&b, "| `sky-coord exec -d` CLI wall time (%d runs) | %s | %s | | | |\n\n", len(cliLat), ms(percentile(cliLat, 0.5)), ms(percentile(cliLat, 0.99)))
	fmt.Fprintf(&b, "Published anchors (not re-measured): SkyPilot 2–3 s per job after its PR #4264; dstack 10–15 s submitted → running.\n\n")
	return b.String()
}

// stopIfDone ends the run (cleaning up) once it was interrupted.
func stopIfDone(ctx context.Context) {
	if ctx.Err() != nil {
		die("interrupted")
	}
}

func connect(home string) *client.Client {
	data, err := os.ReadFile(filepath.Join(home, "server.json"))
	if err != nil {
		die(err)
	}
	addr := strings.Split(strings.Split(string(data), `"addr":"`)[1], `"`)[0]
	tok, err := os.ReadFile(filepath.Join(home, "token"))
	if err != nil {
		die(err)
	}
	return client.New(addr, strings.TrimSpace(string(tok)))
}
