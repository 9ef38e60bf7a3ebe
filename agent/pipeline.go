package agent

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// outcome is how a job's pipeline ended, before cancellation is taken
// into account.
type outcome struct {
	status api.JobStatus
	codes  []int
	msg    string // JobEvent.Message; also written to run.log as "ERROR: msg"
}

// runPipeline runs a job on the head: sync, setup, run (see the package
// comment), then reports the end.
func (a *Agent) runPipeline(j *job) {
	defer a.pipelines.Done()
	out := a.pipeline(j)
	a.finish(j, out)
}

func (a *Agent) pipeline(j *job) outcome {
	spec := j.spec
	failStatus := api.JobFailed
	if spec.Setup != "" {
		failStatus = api.JobFailedSetup
	}
	if err := a.gossipOrder(j); err != nil {
		return outcome{status: failStatus, msg: fmt.Sprintf("Job %d cannot start: %v", spec.JobID, err)}
	}
	spec = j.spec
	if err := a.syncAll(j); err != nil {
		return outcome{status: failStatus, msg: fmt.Sprintf("Job %d's file sync failed: %v", spec.JobID, err)}
	}
	if j.ctx.Err() != nil {
		return outcome{}
	}
	if spec.Setup != "" {
		j.report(a.event(spec, api.JobSettingUp))
		res := a.gather(j.ctx, a.setupTargets(spec), j.runLog, false)
		if j.ctx.Err() != nil {
			return outcome{}
		}
		var failed []string
		codes := make([]int, len(res))
		for i, r := range res {
			codes[i] = r.code
			if r.code != 0 {
				failed = append(failed, fmt.Sprintf("(pid=%d, returncode=%d)", r.pid, r.code))
			}
		}
		if len(failed) > 0 {
			return outcome{status: api.JobFailedSetup, codes: codes,
				msg: fmt.Sprintf("Job %d's setup failed. Failed workers: %s", spec.JobID, strings.Join(failed, ", "))}
		}
	}
	j.report(a.event(spec, api.JobRunning))
	res := a.gather(j.ctx, a.runTargets(spec), j.runLog, true)
	if j.ctx.Err() != nil {
		return outcome{}
	}
	codes := make([]int, len(res))
	for i, r := range res {
		codes[i] = r.code
	}
	if slices.ContainsFunc(codes, func(c int) bool { return c != 0 }) {
		return outcome{status: api.JobFailed, codes: codes, msg: failedMessage(spec.JobID, codes)}
	}
	return outcome{status: api.JobSucceeded, codes: codes}
}

// failedMessage is SkyPilot's epilogue line for a failed run (without
// its "ERROR: " and colors), sky-coord named in place of SkyPilot.
func failedMessage(id int64, codes []int) string {
	strs := make([]string, len(codes))
	for i, c := range codes {
		strs[i] = strconv.Itoa(c)
	}
	msg := fmt.Sprintf("Job %d failed with return code list: [%s]", id, strings.Join(strs, ", "))
	reason := ""
	if slices.Contains(codes, 139) {
		reason = "(likely due to Segmentation Fault)"
	}
	if slices.Contains(codes, 137) {
		first := 137
		if i := slices.IndexFunc(codes, func(c int) bool { return c != 137 }); i >= 0 {
			first = codes[i]
		}
		reason = fmt.Sprintf("(A Worker failed with return code %d, sky-coord cleaned up the processes on other nodes with return code 137)", first)
	}
	if reason != "" {
		msg += " " + reason
	}
	return msg
}

// finish reports the job's end. A job stopped by cancel or shutdown is
// first killed on every node, then ends CANCELLED or FAILED_DRIVER.
func (a *Agent) finish(j *job, out outcome) {
	spec := j.spec
	// Decided once, under the lock cancel takes: a stop that comes later
	// (shutdown) does not change this job's end.
	j.mu.Lock()
	j.ending = true
	stopped, cause := j.ctx.Err() != nil, context.Cause(j.ctx)
	j.mu.Unlock()
	var line string
	switch {
	case !stopped:
		if out.msg != "" {
			line = "ERROR: " + out.msg
		}
	case errors.Is(cause, errCancelled):
		out = outcome{status: api.JobCancelled, msg: "cancelled by the user"}
		line = fmt.Sprintf("Job %d was cancelled; its processes were stopped on every node.", spec.JobID)
	case errors.As(cause, new(*nodeLostError)):
		out = outcome{status: api.JobFailed, msg: fmt.Sprintf("Job %d failed: %v; the processes on the other nodes were stopped (137)", spec.JobID, cause)}
		line = "ERROR: " + out.msg + "."
	default:
		out = outcome{status: api.JobFailedDriver, msg: "the head node's agent shut down while the job ran"}
		line = fmt.Sprintf("ERROR: Job %d stopped: %s.", spec.JobID, out.msg)
	}
	if stopped {
		ctx, cancel := context.WithTimeout(context.Background(), a.grace+15*time.Second)
		a.killOnNodes(ctx, spec.Nodes, spec.JobID)
		cancel()
	}
	// Files the job wrote under MOUNT_CACHED mounts reach their buckets
	// before the job is reported finished.
	fctx, cancel := context.WithTimeout(a.ctx, time.Hour)
	if err := a.flushAll(fctx, j); err != nil {
		msg := fmt.Sprintf("Job %d's files under cached mounts did not all reach their buckets: %v", spec.JobID, err)
		if out.status == api.JobSucceeded {
			out.status, out.msg = api.JobFailed, msg
		}
		j.runLog.line("ERROR: " + msg)
	}
	cancel()
	if line != "" {
		j.runLog.line(line)
	}
	j.runLog.close()
	ev := a.event(spec, out.status)
	ev.ExitCodes, ev.Message = out.codes, out.msg
	j.report(ev)
	a.log.Info("job ended", "job", spec.JobID, "status", out.status, "exit_codes", out.codes)
	close(j.done)
}

func (a *Agent) event(spec api.AgentJob, s api.JobStatus) api.JobEvent {
	return api.JobEvent{Cluster: spec.Cluster, JobID: spec.JobID, Status: s}
}

// syncAll brings the job's trees to every node. The head syncs first,
// from the coordinator, fetching every chunk; then the workers sync in
// parallel, each chunk from its owner among them, the owner from the head.
// So the coordinator sends each chunk once and the head about once. When
// the nodes share one chunk store (nodes on one machine), the head only
// fetches first; then every node, the head too, writes its copy at once.
// Each failure names its node. A line in the job's log says how long it
// took.
func (a *Agent) syncAll(j *job) error {
	spec := j.spec
	start := time.Now()
	var head api.AgentNode
	var workers []api.AgentNode
	for _, n := range spec.Nodes {
		if n.Rank == a.cfg.Rank {
			head = n
		} else {
			workers = append(workers, n)
		}
	}
	shared := a.cfg.ChunkDir != "" && len(workers) > 0
	// What changed since the head synced before: the deltas let every
	// node, the head too, build the manifest from its record and look only
	// at what changed. (Fetching the manifest for them, the head's own
	// sync then finds it decoded.)
	// Under syncMu: another job's sync could otherwise replace a base,
	// and the next one reuse its memory (keepSpare), while it is read.
	a.syncMu.Lock()
	diffs := a.diffs(j.ctx, spec.Blobs, a.syncedBases(spec.Blobs), a.coordinatorSources()...)
	a.syncMu.Unlock()
	deltas := inlineDeltas(diffs)
	headReq := api.NodeSyncRequest{Blobs: spec.Blobs, Mounts: spec.Mounts, MountEnv: spec.MountEnv, Deltas: deltas}
	var prefetched time.Duration
	if shared {
		if err := a.prefetch(j.ctx, spec.Blobs, diffs); err != nil {
			return fmt.Errorf("node %d (%s): %w", head.Rank, head.IP, err)
		}
		prefetched = time.Since(start)
	} else if err := (localNode{a}).sync(j.ctx, headReq); err != nil {
		return fmt.Errorf("node %d (%s): %w", head.Rank, head.IP, err)
	}
	peers := make([]string, len(workers))
	for i, n := range workers {
		peers[i] = n.Addr
	}
	errs := make([]error, len(workers)+1)
	var wg sync.WaitGroup
	if shared {
		wg.Go(func() {
			if err := (localNode{a}).sync(j.ctx, headReq); err != nil {
				errs[len(workers)] = fmt.Errorf("node %d (%s): %w", head.Rank, head.IP, err)
			}
		})
	}
	for i, n := range workers {
		wg.Go(func() {
			req := api.NodeSyncRequest{Blobs: spec.Blobs, Origins: []string{a.cfg.Bind}, Peers: peers, Self: i,
				Mounts: spec.Mounts, MountEnv: spec.MountEnv, Deltas: deltas}
			if err := a.node(n).sync(j.ctx, req); err != nil {
				errs[i] = fmt.Errorf("node %d (%s): %w", n.Rank, n.IP, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(spec.Blobs) > 0 {
		took := time.Since(start)
		j.runLog.line(fmt.Sprintf("sky-coord: synced %s to %d node(s) in %s", blobNames(spec.Blobs), len(spec.Nodes), took.Round(time.Millisecond)))
		a.log.Info("sync of every node", "job", spec.JobID, "nodes", len(spec.Nodes), "took", took, "shared_store", shared, "prefetch", prefetched)
	}
	return nil
}

// blobNames lists the trees a sync brought, by destination.
func blobNames(blobs []api.BlobRef) string {
	names := make([]string, len(blobs))
	for i, b := range blobs {
		names[i] = b.Dest
	}
	return strings.Join(names, ", ")
}

// target is one process of a step: where it runs, what, and its run.log
// prefix given its pid.
type target struct {
	node   api.AgentNode
	req    api.NodeExecRequest
	prefix func(pid int) string
}

func (a *Agent) isSelf(n api.AgentNode) bool { return n.Rank == a.cfg.Rank }

// setupTargets: setup on every node of the cluster.
func (a *Agent) setupTargets(spec api.AgentJob) []target {
	ts := make([]target, len(spec.Nodes))
	for i, n := range spec.Nodes {
		script, _ := taskScript(spec.Setup, setupEnv(spec, i)) // names checked by validateJob
		ts[i] = target{
			node: n,
			req: api.NodeExecRequest{JobID: spec.JobID, Kind: "setup", Script: script,
				LogPath: path.Join("sky_logs", spec.LogDir, "tasks", "setup.log")},
			prefix: func(pid int) string {
				if a.isSelf(n) {
					return fmt.Sprintf("(setup pid=%d) ", pid)
				}
				return fmt.Sprintf("(setup pid=%d, ip=%s) ", pid, n.IP)
			},
		}
	}
	return ts
}

// runTargets: run on Nodes[:NumNodes], rank i on Nodes[i].
func (a *Agent) runTargets(spec api.AgentJob) []target {
	ts := make([]target, spec.NumNodes)
	single := len(spec.Nodes) == 1
	for rank, n := range spec.Nodes[:spec.NumNodes] {
		script, _ := taskScript(spec.Run, runEnv(spec, rank)) // names checked by validateJob
		name := "worker" + strconv.Itoa(n.Rank)
		if n.Rank == 0 {
			name = "head"
		}
		logName := fmt.Sprintf("%d-%s.log", rank, name)
		if single {
			logName = "run.log"
		}
		ts[rank] = target{
			node: n,
			req: api.NodeExecRequest{JobID: spec.JobID, Kind: "run", Script: script,
				LogPath: path.Join("sky_logs", spec.LogDir, "tasks", logName)},
			prefix: func(pid int) string {
				switch {
				case single:
					task := spec.TaskName
					if task == "" {
						task = "task"
					}
					return fmt.Sprintf("(%s, pid=%d) ", task, pid)
				case n.Rank == 0:
					return fmt.Sprintf("(head, rank=%d, pid=%d) ", rank, pid)
				default:
					return fmt.Sprintf("(%s, rank=%d, pid=%d, ip=%s) ", name, rank, pid, n.IP)
				}
			},
		}
	}
	return ts
}

// result is what one target's process came to.
type result struct {
	pid  int
	code int
}

// gather runs every target at once, writing their output into rl, and
// returns their results in target order. With gang, the first non-zero
// exit stops the others (their process groups are killed) and records
// them as 137, as SkyPilot's driver does. A node that could not run its
// process, or whose stream broke, counts as exit code 255.
func (a *Agent) gather(ctx context.Context, ts []target, rl *runLog, gang bool) []result {
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type indexed struct {
		i int
		result
	}
	done := make(chan indexed, len(ts))
	for i, t := range ts {
		go func() {
			done <- indexed{i, a.execOn(gctx, t, rl)}
		}()
	}
	res := make([]result, len(ts))
	failed := false
	var killed sync.WaitGroup
	for range ts {
		r := <-done
		if failed {
			r.code = 137
		} else if r.code != 0 && gang {
			failed = true
			cancel()
			killed.Add(1)
			go func() {
				defer killed.Done()
				kctx, kcancel := context.WithTimeout(context.Background(), a.grace+15*time.Second)
				defer kcancel()
				nodes := make([]api.AgentNode, len(ts))
				for i, t := range ts {
					nodes[i] = t.node
				}
				a.killOnNodes(kctx, nodes, ts[0].req.JobID)
			}()
		}
		res[r.i] = r.result
	}
	killed.Wait()
	return res
}

// execOn runs one target and streams its output into rl behind its prefix.
func (a *Agent) execOn(ctx context.Context, t target, rl *runLog) result {
	r := result{code: -1}
	var w *prefixWriter
	err := a.node(t.node).exec(ctx, t.req, func(f api.ExecFrame) error {
		if f.PID != 0 {
			r.pid = f.PID
			w = rl.stream(t.prefix(f.PID))
		}
		if len(f.Data) > 0 && w != nil {
			w.Write(f.Data)
		}
		if f.Err != "" {
			a.log.Warn("node reported", "job", t.req.JobID, "node", t.node.Rank, "err", f.Err)
		}
		if f.Exit != nil {
			r.code = *f.Exit
		}
		return nil
	})
	if w != nil {
		w.Close()
	}
	if err == nil && r.code >= 0 {
		return r
	}
	if err == nil {
		err = errNoExit
	}
	r.code = 255
	if m := a.members.Load(); ctx.Err() == nil && m != nil && t.node.Rank != a.cfg.Rank {
		// The stream broke: wait for gossip's verdict on the node. A
		// dead node stops the whole job with its name; a live one fails
		// only this rank.
		if why := m.waitLost(ctx, t.node.Rank, LossBound); why != "" {
			a.stopJobsOn(t.node.Rank, why)
			return r
		}
	}
	if ctx.Err() == nil {
		a.log.Warn("exec on node failed", "job", t.req.JobID, "kind", t.req.Kind, "node", t.node.Rank, "err", err)
		rl.line(fmt.Sprintf("ERROR: %s on node %d (%s) failed: %v", t.req.Kind, t.node.Rank, t.node.IP, err))
	}
	return r
}
