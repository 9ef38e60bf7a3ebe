package state

import (
	"fmt"
	"slices"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// Launch records `launch`: a new cluster (INIT, desired UP) or an existing
// one reused, plus its job. The job is PENDING when the cluster is already
// UP and INIT until it is. It returns the job's ID.
func (s *Store) Launch(c api.Cluster, job api.Job, at time.Time) (int64, error) {
	cur, exists := s.Clusters[c.Name]
	if exists {
		switch {
		case cur.Desired == api.DesiredDown:
			return 0, fmt.Errorf("cluster %q is being torn down; wait for `down` to finish, then launch again: %w", c.Name, ErrConflict)
		case job.NumNodes > cur.NumNodes:
			return 0, fmt.Errorf("requested resources do not match the existing cluster %q: the task needs %d nodes, the cluster has %d; use another cluster name or `down` this one first: %w",
				c.Name, job.NumNodes, cur.NumNodes, ErrConflict)
		}
		if cur.Error != "" && len(cur.Nodes) == 0 {
			// A launch that failed everywhere starts over.
			cur.Attempts, cur.Round, cur.RetryAt = nil, 0, time.Time{}
		}
		cur.Desired = api.DesiredUp
		cur.Error = ""
		cur.DownAfterJob = 0
		repair(cur)
		cur.RetryUntilUp = c.RetryUntilUp
	} else {
		s.Incarnations[c.Name]++
		c.Incarnation = s.Incarnations[c.Name]
		c.Status = api.ClusterInit
		c.Desired = api.DesiredUp
		c.LaunchedAt = at
		c.Nodes = nil
		cur = &c
		s.Clusters[c.Name] = cur
	}
	job.Status = api.JobInit
	if cur.Status == api.ClusterUp {
		job.Status = api.JobPending
	}
	id := s.addJob(c.Name, job, at)
	if c.DownAfterJob != 0 {
		cur.DownAfterJob = id
	}
	return id, nil
}

// SubmitJob records `exec`: a job queued on an UP cluster.
func (s *Store) SubmitJob(cluster string, job api.Job, at time.Time) (int64, error) {
	c, ok := s.Clusters[cluster]
	if !ok {
		return 0, fmt.Errorf("cluster %q does not exist; launch it first with `sky-coord launch -c %s TASK.yaml`: %w", cluster, cluster, ErrNotFound)
	}
	if c.Status != api.ClusterUp || c.Desired != api.DesiredUp {
		return 0, fmt.Errorf("cluster %q is %s, not UP; start it with `sky-coord start %s` or launch it: %w", cluster, c.Status, cluster, ErrConflict)
	}
	if job.NumNodes > c.NumNodes {
		return 0, fmt.Errorf("requested resources do not match the existing cluster %q: the task needs %d nodes, the cluster has %d: %w",
			cluster, job.NumNodes, c.NumNodes, ErrConflict)
	}
	job.Status = api.JobPending
	return s.addJob(cluster, job, at), nil
}

func (s *Store) addJob(cluster string, job api.Job, at time.Time) int64 {
	s.NextJobID[cluster]++
	job.ID = s.NextJobID[cluster]
	job.Cluster = cluster
	job.SubmittedAt = at
	job.LogDir = fmt.Sprintf("%d-%s", job.ID, logName(job.Name))
	job.TaskID = fmt.Sprintf("sky-%s_%s_%d", job.RunTimestamp, cluster, job.ID)
	s.Jobs[cluster] = append(s.Jobs[cluster], &job)
	return job.ID
}

func logName(name string) string {
	if name == "" {
		return "task"
	}
	return name
}

// RecordNodes records the instances the provider returned for a cluster.
func (s *Store) RecordNodes(cluster string, incarnation uint64, nodes []api.Node, cloud, region, zone string, at time.Time) error {
	c, ok := s.Clusters[cluster]
	if !ok {
		return fmt.Errorf("cluster %q: %w", cluster, ErrNotFound)
	}
	if incarnation != 0 && incarnation != c.Incarnation {
		return fmt.Errorf("cluster %q: nodes provisioned for its incarnation %d, but it is now incarnation %d: %w", cluster, incarnation, c.Incarnation, ErrConflict)
	}
	c.Nodes = append([]api.Node(nil), nodes...)
	c.Cloud, c.Region, c.Zone = cloud, region, zone
	c.Infra = infra(cloud, region, zone)
	addCloud(c, cloud)
	if n := len(c.Attempts); n > 0 && c.Attempts[n-1].Outcome == api.AttemptRunning {
		c.Attempts[n-1].Outcome = api.AttemptLaunched
	}
	c.HeadIP = ""
	if len(nodes) > 0 {
		c.HeadIP = nodes[0].IP
	}
	return nil
}

// SetClusterStatus records an observed cluster status. Reaching UP moves
// the cluster's waiting launch jobs from INIT to PENDING.
func (s *Store) SetClusterStatus(cluster string, status api.ClusterStatus, at time.Time) error {
	c, ok := s.Clusters[cluster]
	if !ok {
		return fmt.Errorf("cluster %q: %w", cluster, ErrNotFound)
	}
	c.Status = status
	switch status {
	case api.ClusterUp:
		c.Error = ""
		c.UpSince = at
		for i := range c.Nodes {
			c.Nodes[i].Healthy = true
		}
		for _, j := range s.Jobs[cluster] {
			if j.Status == api.JobInit {
				j.Status = api.JobPending
			}
		}
	case api.ClusterStopped:
		for i := range c.Nodes {
			c.Nodes[i].Healthy = false
		}
	}
	return nil
}

// LaunchFailed records that provisioning or bootstrap failed: the cluster
// keeps its status with Error set, and its waiting launch jobs end as
// FAILED_DRIVER with the reason.
func (s *Store) LaunchFailed(cluster, reason string, at time.Time) error {
	c, ok := s.Clusters[cluster]
	if !ok {
		return fmt.Errorf("cluster %q: %w", cluster, ErrNotFound)
	}
	c.Error = reason
	for _, j := range s.Jobs[cluster] {
		if j.Status == api.JobInit {
			s.endJob(j, api.JobFailedDriver, nil, reason, at)
		}
	}
	return nil
}

// SetDesired records what the user asked of a cluster: stop, start or
// down. Stopping or downing cancels the cluster's unfinished jobs.
func (s *Store) SetDesired(cluster string, d api.Desired, at time.Time) error {
	c, ok := s.Clusters[cluster]
	if !ok {
		return fmt.Errorf("cluster %q does not exist: %w", cluster, ErrNotFound)
	}
	if c.Desired == api.DesiredDown && d != api.DesiredDown {
		return fmt.Errorf("cluster %q is being torn down: %w", cluster, ErrConflict)
	}
	c.Desired = d
	c.Error = ""
	if d == api.DesiredUp {
		repair(c)
	}
	if d == api.DesiredStopped || d == api.DesiredDown {
		reason := "cluster stopped"
		if d == api.DesiredDown {
			reason = "cluster torn down"
		}
		for _, j := range s.Jobs[cluster] {
			if !j.Status.Terminal() {
				s.endJob(j, api.JobCancelled, nil, reason, at)
			}
		}
	}
	return nil
}

// RemoveCluster forgets a cluster once its instances are gone. Its job ID
// counter and incarnation are kept.
func (s *Store) RemoveCluster(cluster string) error {
	if _, ok := s.Clusters[cluster]; !ok {
		return fmt.Errorf("cluster %q: %w", cluster, ErrNotFound)
	}
	delete(s.Clusters, cluster)
	delete(s.Jobs, cluster)
	delete(s.Events, cluster)
	for _, st := range s.Storages {
		st.Clusters = slices.DeleteFunc(st.Clusters, func(c string) bool { return c == cluster })
	}
	return nil
}

func infra(cloud, region, zone string) string {
	s := cloud
	if region != "" && region != cloud {
		s += "/" + region
	}
	if zone != "" {
		s += "/" + zone
	}
	return s
}

func addCloud(c *api.Cluster, cloud string) {
	for _, x := range c.Clouds {
		if x == cloud {
			return
		}
	}
	c.Clouds = append(c.Clouds, cloud)
}

// StartAttempt records that the launcher is trying one offer.
func (s *Store) StartAttempt(cluster string, a api.Attempt, at time.Time) error {
	c, ok := s.Clusters[cluster]
	if !ok {
		return fmt.Errorf("cluster %q: %w", cluster, ErrNotFound)
	}
	a.N = len(c.Attempts) + 1
	a.Round = c.Round
	a.Outcome = api.AttemptRunning
	a.StartedAt = at
	c.Attempts = append(c.Attempts, a)
	c.Cloud, c.Region, c.Zone, c.InstanceType = a.Cloud, a.Region, a.Zone, a.InstanceType
	c.HourlyCost = a.HourlyCost
	c.Infra = infra(a.Cloud, a.Region, a.Zone)
	addCloud(c, a.Cloud)
	return nil
}

// FailAttempt records why attempt n failed and what it blocks.
func (s *Store) FailAttempt(cluster string, n int, reason, scope string) error {
	c, ok := s.Clusters[cluster]
	if !ok {
		return fmt.Errorf("cluster %q: %w", cluster, ErrNotFound)
	}
	if n < 1 || n > len(c.Attempts) {
		return fmt.Errorf("cluster %q has no attempt %d: %w", cluster, n, ErrNotFound)
	}
	a := &c.Attempts[n-1]
	a.Outcome, a.Reason, a.Scope = api.AttemptFailed, reason, scope
	return nil
}

// NextRound records that every offer failed and, for --retry-until-up,
// when the next round of attempts may start.
func (s *Store) NextRound(cluster string, retryAt time.Time) error {
	c, ok := s.Clusters[cluster]
	if !ok {
		return fmt.Errorf("cluster %q: %w", cluster, ErrNotFound)
	}
	c.Round++
	c.RetryAt = retryAt
	return nil
}

// LoseNode records that a node died: the cluster is INIT (degraded, as
// SkyPilot shows a cluster with a node gone) until start or a relaunch.
func (s *Store) LoseNode(cluster string, rank int, reason string, at time.Time) error {
	c, ok := s.Clusters[cluster]
	if !ok {
		return fmt.Errorf("cluster %q: %w", cluster, ErrNotFound)
	}
	if rank < 0 || rank >= len(c.Nodes) {
		return fmt.Errorf("cluster %q has no node %d: %w", cluster, rank, ErrNotFound)
	}
	if c.Desired != api.DesiredUp || c.Nodes[rank].Lost != "" {
		return nil // stopping or already known
	}
	c.Nodes[rank].Lost = reason
	c.Nodes[rank].Healthy = false
	if c.Status == api.ClusterUp {
		c.Status = api.ClusterInit
	}
	return nil
}

// Degraded reports whether a node of the cluster was lost.
func Degraded(c *api.Cluster) bool {
	for _, n := range c.Nodes {
		if n.Lost != "" {
			return true
		}
	}
	return false
}

// repair clears lost marks so the controller brings the nodes back.
func repair(c *api.Cluster) {
	for i := range c.Nodes {
		c.Nodes[i].Lost = ""
	}
}

// SetAutostop sets (or, with nil, cancels) a cluster's idle policy.
func (s *Store) SetAutostop(cluster string, a *api.Autostop) error {
	c, ok := s.Clusters[cluster]
	if !ok {
		return fmt.Errorf("cluster %q does not exist: %w", cluster, ErrNotFound)
	}
	c.Autostop = a
	return nil
}

// IdleSince is when a cluster last had an unfinished job (or its autostop
// was set, or it was launched), and whether it is idle now.
func (s *Store) IdleSince(cluster string) (time.Time, bool) {
	c, ok := s.Clusters[cluster]
	if !ok {
		return time.Time{}, false
	}
	since := c.LaunchedAt
	if c.UpSince.After(since) {
		since = c.UpSince
	}
	if c.Autostop != nil && c.Autostop.SetAt.After(since) {
		since = c.Autostop.SetAt
	}
	for _, j := range s.Jobs[cluster] {
		if !j.Status.Terminal() {
			return time.Time{}, false
		}
		if j.SubmittedAt.After(since) {
			since = j.SubmittedAt
		}
		if j.EndedAt != nil && j.EndedAt.After(since) {
			since = *j.EndedAt
		}
	}
	return since, true
}
