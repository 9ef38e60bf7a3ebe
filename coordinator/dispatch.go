package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
	"github.com/sky-coord/sky-coord/spec"
)

// cpuDemand is what a job without accelerators asks of each of its nodes,
// as SkyPilot's DEFAULT_TASK_CPU_DEMAND.
const cpuDemand = 0.5

// dispatch delivers pending cancels to the head, then hands PENDING jobs to
// it in ID order while they fit the cluster, as SkyPilot's FIFO scheduler:
// a job that does not fit holds back the ones behind it.
func (s *Server) dispatch(ctx context.Context, c *api.Cluster, jobs []*api.Job) {
	if len(c.Nodes) == 0 {
		return
	}
	head := c.Nodes[0]
	token := s.agentToken(c.Name, c.Incarnation)
	for _, j := range jobs {
		if !j.CancelPending {
			continue
		}
		if err := s.agents.cancel(ctx, head.AgentAddr, token, j.ID); err != nil {
			s.log.Warn("deliver cancel", "cluster", c.Name, "job", j.ID, "err", err)
			continue
		}
		if _, err := s.apply(fsm.CancelDeliveredType, fsm.CancelDelivered{Cluster: c.Name, JobID: j.ID}); err != nil {
			s.log.Warn("record cancel delivered", "cluster", c.Name, "job", j.ID, "err", err)
		}
	}

	used := make([]usage, len(c.Nodes))
	for _, j := range jobs {
		if j.Dispatched && !j.Status.Terminal() {
			addUsage(used, j)
		}
	}
	for _, j := range jobs {
		if j.Status != api.JobPending || j.Dispatched {
			continue
		}
		if !fits(c.Nodes, used, j) {
			return
		}
		aj, err := s.agentJob(c, j)
		if err != nil {
			s.failJob(c.Name, j.ID, err)
			continue
		}
		if err := s.agents.submit(ctx, head.AgentAddr, token, aj); err != nil {
			s.event(c.Name, fmt.Sprintf("Could not hand job %d to the head node (will retry): %v", j.ID, err))
			return
		}
		if _, err := s.apply(fsm.JobDispatchedType, fsm.JobDispatched{Cluster: c.Name, JobID: j.ID}); err != nil {
			s.log.Warn("record dispatch", "cluster", c.Name, "job", j.ID, "err", err)
			return
		}
		addUsage(used, j)
	}
}

type usage struct{ cpus, gpus float64 }

func demand(j *api.Job) usage {
	if g := gpusPerNode(j.Task); g > 0 {
		return usage{gpus: float64(g)}
	}
	return usage{cpus: cpuDemand}
}

func addUsage(used []usage, j *api.Job) {
	d := demand(j)
	for i := 0; i < j.NumNodes && i < len(used); i++ {
		used[i].cpus += d.cpus
		used[i].gpus += d.gpus
	}
}

func fits(nodes []api.Node, used []usage, j *api.Job) bool {
	d := demand(j)
	for i := 0; i < j.NumNodes && i < len(nodes); i++ {
		n := nodes[i]
		if n.CPUs > 0 && used[i].cpus+d.cpus > float64(n.CPUs) {
			return false
		}
		if n.GPUs > 0 && used[i].gpus+d.gpus > float64(n.GPUs) {
			return false
		}
	}
	return true
}

// gpusPerNode is SKYPILOT_NUM_GPUS_PER_NODE: the ceiling of the requested
// accelerator count.
func gpusPerNode(t *spec.Task) int {
	if t == nil || t.Resources.Accelerators == nil {
		return 0
	}
	return int(math.Ceil(t.Resources.Accelerators.Count))
}

// failJob ends a job the coordinator cannot hand to the head.
func (s *Server) failJob(cluster string, id int64, err error) {
	if _, aerr := s.apply(fsm.JobTransitionType, fsm.JobTransition{Cluster: cluster, JobID: id,
		Status: api.JobFailedDriver, Message: err.Error(), At: time.Now().UTC()}); aerr != nil {
		s.log.Warn("record job failure", "cluster", cluster, "job", id, "err", aerr)
	}
}

// agentJob turns a recorded job into what the head runs.
func (s *Server) agentJob(c *api.Cluster, j *api.Job) (*api.AgentJob, error) {
	t, err := s.openSecrets(j.Task)
	if err != nil {
		return nil, err
	}
	if t == nil {
		t = &spec.Task{}
	}
	aj := &api.AgentJob{
		JobID: j.ID, Name: j.Name, TaskID: j.TaskID, LogDir: j.LogDir,
		Cluster: c.Name, User: j.User, NumNodes: j.NumNodes,
		Run: t.Run, NumGPUsPerNode: gpusPerNode(t), ClusterInfo: clusterInfo(c),
		Blobs: j.Blobs, TaskName: t.Name, Mounts: j.Mounts, MountEnv: mountEnv(j.Mounts),
	}
	if j.RunSetup {
		aj.Setup = t.Setup
	}
	for _, n := range c.Nodes {
		aj.Nodes = append(aj.Nodes, api.AgentNode{Rank: n.Rank, IP: n.IP, Addr: n.AgentAddr})
	}
	if len(t.Envs)+len(t.Secrets) > 0 {
		aj.Envs = map[string]string{}
		for k, v := range t.Envs {
			aj.Envs[k] = v
		}
		for k, v := range t.Secrets {
			aj.Envs[k] = v
			aj.SecretNames = append(aj.SecretNames, k)
		}
		sort.Strings(aj.SecretNames)
	}
	return aj, nil
}

// clusterInfo is SKYPILOT_CLUSTER_INFO, formatted as Python's json.dumps
// (", " and ": " separators), which user scripts may parse or compare.
func clusterInfo(c *api.Cluster) string {
	str := func(v string) string {
		if v == "" {
			return "null"
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	return fmt.Sprintf(`{"cluster_name": %s, "cloud": %s, "region": %s, "zone": %s}`,
		str(c.Name), str(c.Cloud), str(c.Region), str(c.Zone))
}

// runTimestamp formats a submission time as SkyPilot's run timestamp.
func runTimestamp(t time.Time) string {
	return t.Format("2006-01-02-15-04-05") + fmt.Sprintf("-%06d", t.Nanosecond()/1000)
}
