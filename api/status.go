// Package api holds the wire types (JSON) shared by the coordinator, the
// agent and the client: the only vocabulary they share. It has no logic
// beyond small helpers on those types.
package api

// JobStatus is the state of a job in a cluster's queue. The names and their
// order are SkyPilot's (sky/skylet/job_lib.py JobStatus):
//
//	INIT ──► PENDING ──► SETTING_UP ──► RUNNING ──► SUCCEEDED
//	  │         │            │             ├──────► FAILED
//	  │         │            └─────────────┼──────► FAILED_SETUP
//	  └─────────┴──────────────────────────┴──────► CANCELLED / FAILED_DRIVER
//
// A job only moves forward in this order; the terminal states never change.
type JobStatus string

// The job states, in SkyPilot's order.
const (
	JobInit         JobStatus = "INIT"
	JobPending      JobStatus = "PENDING"
	JobSettingUp    JobStatus = "SETTING_UP"
	JobRunning      JobStatus = "RUNNING"
	JobFailedDriver JobStatus = "FAILED_DRIVER"
	JobSucceeded    JobStatus = "SUCCEEDED"
	JobFailed       JobStatus = "FAILED"
	JobFailedSetup  JobStatus = "FAILED_SETUP"
	JobCancelled    JobStatus = "CANCELLED"
)

// JobStatuses lists every job state in SkyPilot's order.
var JobStatuses = []JobStatus{JobInit, JobPending, JobSettingUp, JobRunning,
	JobFailedDriver, JobSucceeded, JobFailed, JobFailedSetup, JobCancelled}

// Terminal reports whether s is a final state.
func (s JobStatus) Terminal() bool {
	switch s {
	case JobInit, JobPending, JobSettingUp, JobRunning:
		return false
	}
	return true
}

// Order is s's position in SkyPilot's order, or -1 for an unknown state.
func (s JobStatus) Order() int {
	for i, v := range JobStatuses {
		if v == s {
			return i
		}
	}
	return -1
}

// ClusterStatus is the state of a cluster, as SkyPilot shows it
// (sky/utils/status_lib.py):
//
//	(launch) ──► INIT ──► UP ──► STOPPED ──► INIT (start) ──► UP
//	              ▲        │
//	              └────────┘  a node lost: degraded until start or relaunch
//
// `down` removes the cluster from the table once the provider confirms
// that every instance is gone.
type ClusterStatus string

// The cluster states.
const (
	ClusterInit    ClusterStatus = "INIT"
	ClusterUp      ClusterStatus = "UP"
	ClusterStopped ClusterStatus = "STOPPED"
)

// Desired is what the user last asked a cluster to be; controllers move the
// observed status toward it.
type Desired string

// The desired states of a cluster.
const (
	DesiredUp      Desired = "UP"
	DesiredStopped Desired = "STOPPED"
	DesiredDown    Desired = "DOWN"
)
