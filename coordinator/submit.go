package coordinator

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
	"github.com/sky-coord/sky-coord/coordinator/state"
	"github.com/sky-coord/sky-coord/providers"
	"github.com/sky-coord/sky-coord/spec"
	"github.com/sky-coord/sky-coord/transfer"
)

// clusterNameRE is SkyPilot's cluster name rule.
var clusterNameRE = regexp.MustCompile(`^[a-zA-Z]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$`)

func (s *Server) checkTask(t *spec.Task, blobs []api.BlobRef) error {
	if t == nil {
		return fmt.Errorf("the request has no task: %w", errBadRequest)
	}
	if t.NumNodes < 1 {
		return fmt.Errorf("num_nodes must be at least 1, got %d: %w", t.NumNodes, errBadRequest)
	}
	for _, b := range blobs {
		id, err := transfer.ParseChunkID(b.Digest)
		if err != nil {
			return fmt.Errorf("manifest for %s: %v: %w", b.Dest, err, errBadRequest)
		}
		if len(b.Delta) > api.MaxBlobDelta {
			return fmt.Errorf("the manifest delta for %s is %d bytes, more than %d: send it without one: %w", b.Dest, len(b.Delta), api.MaxBlobDelta, errBadRequest)
		}
		missing, err := s.chunks.Missing(context.Background(), []transfer.ChunkID{id})
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return fmt.Errorf("the manifest of %s (%s) is not on the coordinator; upload it again: %w", b.Dest, b.Digest, errBadRequest)
		}
	}
	return nil
}

func (s *Server) handleLaunch(w http.ResponseWriter, r *http.Request) {
	var req api.LaunchRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	if !clusterNameRE.MatchString(req.Cluster) {
		s.fail(w, fmt.Errorf("cluster name %q is invalid: it must start with a letter and contain only letters, digits, '-', '_' and '.': %w", req.Cluster, errBadRequest))
		return
	}
	if err := s.checkTask(req.Task, req.Blobs); err != nil {
		s.fail(w, err)
		return
	}
	t := req.Task
	var existing *api.Cluster
	s.read(func(st *state.Store) { existing, _ = st.Cluster(req.Cluster) })
	cloud := strings.ToLower(t.Resources.Cloud)
	if existing != nil && len(existing.Nodes) > 0 {
		cloud = existing.Cloud
	} else {
		// Fail now, before anything is recorded, when no offer fits.
		plan, _, err := s.plan(t.Resources, t.NumNodes, nil, false)
		if err != nil {
			s.fail(w, fmt.Errorf("%v: %w", err, errBadRequest))
			return
		}
		if len(plan) > 0 {
			cloud = plan[0].Cloud
		}
	}
	if p, err := s.provider(cloud); err == nil {
		if v, ok := p.(Validator); ok {
			var dsts []string
			for _, fm := range t.FileMounts {
				dsts = append(dsts, fm.Dst)
			}
			if err := v.ValidateTask(providers.LaunchRequest{Cluster: req.Cluster, NumNodes: t.NumNodes, FileMountDsts: dsts}); err != nil {
				s.fail(w, fmt.Errorf("%s: %w", strings.TrimSuffix(err.Error(), ": "+providers.ErrInvalidRequest.Error()), errBadRequest))
				return
			}
		}
	}
	pm, err := s.prepareMounts(r.Context(), t, req.StorageSources)
	if err != nil {
		s.fail(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	sealed, err := s.sealSecrets(t)
	if err != nil {
		s.fail(w, err)
		return
	}
	now := time.Now().UTC()
	c := api.Cluster{Name: req.Cluster, NumNodes: t.NumNodes, Infra: cloud,
		Resources: clusterResources(t.NumNodes, t.Resources, cloud), User: req.User, Requested: t.Resources,
		RetryUntilUp: req.RetryUntilUp}
	if req.Down {
		c.DownAfterJob = -1 // the store fills in the job's ID
	}
	job := api.Job{Name: t.Name, User: req.User, NumNodes: t.NumNodes, RunSetup: !req.NoSetup,
		Task: sealed, Blobs: req.Blobs, Mounts: pm.refs, Resources: jobResources(t.NumNodes, t.Resources), RunTimestamp: runTimestamp(now)}
	res, err := s.apply(fsm.ClusterLaunchType, fsm.ClusterLaunch{Cluster: c, Job: job, At: now})
	if err != nil {
		s.fail(w, err)
		return
	}
	s.recordStorages(req.Cluster, pm.storages)
	if a := autostopFrom(req.Autostop, t.Resources, now); a != nil {
		if _, err := s.apply(fsm.AutostopSetType, fsm.AutostopSet{Cluster: req.Cluster, Autostop: a}); err != nil {
			s.log.Warn("set autostop", "cluster", req.Cluster, "err", err)
		}
	}
	writeJSON(w, http.StatusOK, api.SubmitResponse{Cluster: req.Cluster, JobID: res.JobID})
}

func (s *Server) handleExec(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.ExecRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	if err := s.checkTask(req.Task, req.Blobs); err != nil {
		s.fail(w, err)
		return
	}
	t := req.Task
	sealed, err := s.sealSecrets(t)
	if err != nil {
		s.fail(w, err)
		return
	}
	now := time.Now().UTC()
	job := api.Job{Name: t.Name, User: req.User, NumNodes: t.NumNodes, Task: sealed, Blobs: req.Blobs,
		Resources: jobResources(t.NumNodes, t.Resources), RunTimestamp: runTimestamp(now)}
	res, err := s.apply(fsm.JobSubmitType, fsm.JobSubmit{Cluster: name, Job: job, At: now})
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.SubmitResponse{Cluster: name, JobID: res.JobID})
}

// clusterResources renders a cluster's RESOURCES column as SkyPilot does:
// "3x(gpus=V100:1, cpus=4+, mem=16+, local)".
func clusterResources(n int, r spec.Resources, cloud string) string {
	var parts []string
	if a := r.Accelerators; a != nil {
		parts = append(parts, "gpus="+a.Name+":"+strconv.FormatFloat(a.Count, 'f', -1, 64))
	}
	if r.CPUs != "" {
		parts = append(parts, "cpus="+r.CPUs)
	}
	if r.Memory != "" {
		parts = append(parts, "mem="+r.Memory)
	}
	parts = append(parts, cloud)
	return fmt.Sprintf("%dx(%s)", n, strings.Join(parts, ", "))
}

// jobResources renders a job's RESOURCES column as SkyPilot's queue:
// "2x[V100:1]", or "3x[CPU:0.5]" for a job without accelerators.
func jobResources(n int, r spec.Resources) string {
	if a := r.Accelerators; a != nil {
		return fmt.Sprintf("%dx[%s:%s]", n, a.Name, strconv.FormatFloat(a.Count, 'f', -1, 64))
	}
	return fmt.Sprintf("%dx[CPU:%s]", n, strconv.FormatFloat(cpuDemand, 'f', -1, 64))
}

// handleLog streams a job's log from the head. It waits for the job to be
// handed to the head first; a job that ended before that has no log.
func (s *Server) handleLog(w http.ResponseWriter, r *http.Request) {
	j, err := s.jobFromPath(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	follow := r.URL.Query().Get("follow") != ""
	tail, _ := strconv.Atoi(r.URL.Query().Get("tail"))
	if follow {
		j, err = s.waitJob(r.Context(), j.Cluster, j.ID, func(j *api.Job) bool { return j.Dispatched || j.Status.Terminal() })
		if err != nil {
			s.fail(w, err)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !j.Dispatched {
		if j.Message != "" {
			fmt.Fprintf(w, "Job %d is %s: %s\n", j.ID, j.Status, j.Message)
		} else {
			fmt.Fprintf(w, "Job %d is %s and has no logs yet.\n", j.ID, j.Status)
		}
		return
	}
	var c *api.Cluster
	s.read(func(st *state.Store) { c, err = st.Cluster(j.Cluster) })
	if err != nil || len(c.Nodes) == 0 {
		fmt.Fprintf(w, "Cluster %s has no nodes; its logs are gone.\n", j.Cluster)
		return
	}
	body, err := s.agents.log(r.Context(), c.Nodes[0].AgentAddr, s.agentToken(c.Name, c.Incarnation), j.ID, follow, tail)
	if err != nil {
		writeError(w, http.StatusBadGateway, fmt.Errorf("read job %d's log from the head node: %w", j.ID, err))
		return
	}
	defer body.Close()
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF || rerr != nil {
			return
		}
	}
}
