package state

import (
	"fmt"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// TransitionJob moves a job forward (see api.JobStatus for the diagram).
// Repeating the current status is a no-op; moving backwards or out of a
// terminal state is ErrConflict, so a late or duplicated agent report can
// never undo a recorded result.
func (s *Store) TransitionJob(cluster string, id int64, to api.JobStatus, exitCodes []int, msg string, at time.Time) error {
	j := s.job(cluster, id)
	if j == nil {
		return fmt.Errorf("job %d of cluster %q: %w", id, cluster, ErrNotFound)
	}
	if to.Order() < 0 {
		return fmt.Errorf("job %d: unknown status %q: %w", id, to, ErrConflict)
	}
	if j.Status == to {
		return nil
	}
	if j.Status.Terminal() {
		return fmt.Errorf("job %d of cluster %q is already %s: %w", id, cluster, j.Status, ErrConflict)
	}
	if !to.Terminal() && to.Order() < j.Status.Order() {
		return fmt.Errorf("job %d of cluster %q cannot go from %s back to %s: %w", id, cluster, j.Status, to, ErrConflict)
	}
	if to != api.JobPending && to != api.JobInit {
		j.Dispatched = true
	}
	if to.Terminal() {
		s.endJob(j, to, exitCodes, msg, at)
		return nil
	}
	j.Status = to
	if (to == api.JobSettingUp || to == api.JobRunning) && j.StartedAt == nil {
		t := at
		j.StartedAt = &t
	}
	return nil
}

func (s *Store) endJob(j *api.Job, to api.JobStatus, exitCodes []int, msg string, at time.Time) {
	j.Status = to
	if exitCodes != nil {
		j.ExitCodes = append([]int(nil), exitCodes...)
	}
	if msg != "" {
		j.Message = msg
	}
	t := at
	j.EndedAt = &t
	if c, ok := s.Clusters[j.Cluster]; ok && c.DownAfterJob == j.ID {
		c.Desired = api.DesiredDown
	}
}

// MarkDispatched records that the head agent accepted a job.
func (s *Store) MarkDispatched(cluster string, id int64) error {
	j := s.job(cluster, id)
	if j == nil {
		return fmt.Errorf("job %d of cluster %q: %w", id, cluster, ErrNotFound)
	}
	j.Dispatched = true
	return nil
}

// CancelJobs cancels unfinished jobs (all of them when all is set) and
// returns the IDs it cancelled. A job already handed to the head keeps
// CancelPending until the head has been told to kill its processes.
func (s *Store) CancelJobs(cluster string, ids []int64, all bool, at time.Time) ([]int64, error) {
	if _, ok := s.Clusters[cluster]; !ok {
		return nil, fmt.Errorf("cluster %q does not exist: %w", cluster, ErrNotFound)
	}
	var targets []*api.Job
	if all {
		targets = s.Jobs[cluster]
	} else {
		for _, id := range ids {
			j := s.job(cluster, id)
			if j == nil {
				return nil, fmt.Errorf("job %d does not exist on cluster %q; see `sky-coord queue %s`: %w", id, cluster, cluster, ErrNotFound)
			}
			targets = append(targets, j)
		}
	}
	cancelled := []int64{}
	for _, j := range targets {
		if j.Status.Terminal() {
			continue
		}
		j.CancelPending = j.Dispatched
		s.endJob(j, api.JobCancelled, nil, "cancelled by user", at)
		cancelled = append(cancelled, j.ID)
	}
	return cancelled, nil
}

// CancelDelivered records that the head was told to kill a cancelled job.
func (s *Store) CancelDelivered(cluster string, id int64) error {
	j := s.job(cluster, id)
	if j == nil {
		return fmt.Errorf("job %d of cluster %q: %w", id, cluster, ErrNotFound)
	}
	j.CancelPending = false
	return nil
}
