package state

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/api"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func upCluster(t *testing.T, nodes int) *Store {
	t.Helper()
	s := New()
	if _, err := s.Launch(api.Cluster{Name: "c", NumNodes: nodes}, api.Job{Name: "train", NumNodes: nodes, RunTimestamp: "ts"}, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetClusterStatus("c", api.ClusterUp, t0); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLaunchJobWaitsInInitUntilUp(t *testing.T) {
	s := New()
	id, err := s.Launch(api.Cluster{Name: "c", NumNodes: 2}, api.Job{Name: "train", NumNodes: 2, RunTimestamp: "2026-11-29-12-00-00-000001"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := s.Job("c", id)
	if j.Status != api.JobInit || j.TaskID != "sky-2026-11-29-12-00-00-000001_c_1" || j.LogDir != "1-train" {
		t.Fatalf("job = %+v", j)
	}
	if err := s.SetClusterStatus("c", api.ClusterUp, t0); err != nil {
		t.Fatal(err)
	}
	if j, _ = s.Job("c", id); j.Status != api.JobPending {
		t.Fatalf("after UP: %s, want PENDING", j.Status)
	}
}

func TestJobTransitions(t *testing.T) {
	tests := []struct {
		name    string
		steps   []api.JobStatus
		wantErr bool
		final   api.JobStatus
	}{
		{"forward", []api.JobStatus{api.JobSettingUp, api.JobRunning, api.JobSucceeded}, false, api.JobSucceeded},
		{"repeat is a no-op", []api.JobStatus{api.JobRunning, api.JobRunning}, false, api.JobRunning},
		{"backwards refused", []api.JobStatus{api.JobRunning, api.JobSettingUp}, true, api.JobRunning},
		{"terminal is final", []api.JobStatus{api.JobFailed, api.JobSucceeded}, true, api.JobFailed},
		{"setup failure", []api.JobStatus{api.JobSettingUp, api.JobFailedSetup}, false, api.JobFailedSetup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := upCluster(t, 1)
			var err error
			for _, st := range tt.steps {
				if e := s.TransitionJob("c", 1, st, nil, "", t0); e != nil {
					err = e
				}
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrConflict) {
				t.Errorf("err = %v, want ErrConflict", err)
			}
			if j, _ := s.Job("c", 1); j.Status != tt.final {
				t.Errorf("status = %s, want %s", j.Status, tt.final)
			}
		})
	}
}

func TestExecNeedsUpClusterWithEnoughNodes(t *testing.T) {
	s := New()
	if _, err := s.SubmitJob("c", api.Job{NumNodes: 1}, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("exec on a missing cluster: %v, want ErrNotFound", err)
	}
	s = upCluster(t, 2)
	if _, err := s.SubmitJob("c", api.Job{NumNodes: 3}, t0); !errors.Is(err, ErrConflict) {
		t.Errorf("exec asking 3 of 2 nodes: %v, want ErrConflict", err)
	}
	id, err := s.SubmitJob("c", api.Job{NumNodes: 2}, t0)
	if err != nil || id != 2 {
		t.Fatalf("exec: id %d err %v", id, err)
	}
}

func TestCancelAndDownAfterJob(t *testing.T) {
	s := New()
	if _, err := s.Launch(api.Cluster{Name: "c", NumNodes: 1, DownAfterJob: -1}, api.Job{NumNodes: 1}, t0); err != nil {
		t.Fatal(err)
	}
	_ = s.SetClusterStatus("c", api.ClusterUp, t0)
	_ = s.TransitionJob("c", 1, api.JobRunning, nil, "", t0)
	ids, err := s.CancelJobs("c", nil, true, t0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{1}, ids); diff != "" {
		t.Errorf("cancelled (-want +got):\n%s", diff)
	}
	j, _ := s.Job("c", 1)
	if j.Status != api.JobCancelled || !j.CancelPending {
		t.Errorf("job = %s pending=%v, want CANCELLED with the kill pending", j.Status, j.CancelPending)
	}
	c, _ := s.Cluster("c")
	if c.Desired != api.DesiredDown {
		t.Errorf("launch --down: desired %s after its job ended, want DOWN", c.Desired)
	}
}

func TestJobIDsNeverReusedAfterTeardown(t *testing.T) {
	s := upCluster(t, 1)
	if err := s.RemoveCluster("c"); err != nil {
		t.Fatal(err)
	}
	id, _ := s.Launch(api.Cluster{Name: "c", NumNodes: 1}, api.Job{NumNodes: 1}, t0)
	if id != 2 {
		t.Errorf("job ID after relaunch = %d, want 2", id)
	}
	c, _ := s.Cluster("c")
	if c.Incarnation != 2 {
		t.Errorf("incarnation = %d, want 2", c.Incarnation)
	}
}
