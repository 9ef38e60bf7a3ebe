package fsm

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// MessageType numbers a log entry's command. The numbers are append-only:
// a type is never renumbered or reused, so old logs replay forever.
type MessageType uint8

// The log entry types. Add new ones at the end.
const (
	ClusterLaunchType   MessageType = 1
	JobSubmitType       MessageType = 2
	NodesRecordedType   MessageType = 3
	ClusterStatusType   MessageType = 4
	LaunchFailedType    MessageType = 5
	ClusterDesiredType  MessageType = 6
	ClusterRemovedType  MessageType = 7
	JobTransitionType   MessageType = 8
	JobDispatchedType   MessageType = 9
	JobCancelType       MessageType = 10
	CancelDeliveredType MessageType = 11
	ClusterEventType    MessageType = 12
	AttemptStartedType  MessageType = 13
	AttemptFailedType   MessageType = 14
	RetryRoundType      MessageType = 15
	NodeLostType        MessageType = 16
	HostKeySetType      MessageType = 17
	StoragePutType      MessageType = 18
	StorageRemovedType  MessageType = 19
	AutostopSetType     MessageType = 20

	// LastMessageType is the highest type this binary knows.
	LastMessageType = AutostopSetType
)

// IgnoreUnknownFlag may be OR-ed into a type by a newer version for an
// entry older replicas may skip rather than fail on.
const IgnoreUnknownFlag MessageType = 128

// Messages. Every field a replica needs, times included, is filled in by
// the API handler or controller before the entry is appended.

// ClusterLaunch records `launch`.
type ClusterLaunch struct {
	Cluster api.Cluster `json:"cluster"`
	Job     api.Job     `json:"job"`
	At      time.Time   `json:"at"`
}

// JobSubmit records `exec`.
type JobSubmit struct {
	Cluster string    `json:"cluster"`
	Job     api.Job   `json:"job"`
	At      time.Time `json:"at"`
}

// NodesRecorded records the instances a provider returned.
type NodesRecorded struct {
	Cluster string `json:"cluster"`
	// Incarnation is the cluster's when its nodes were provisioned:
	// nodes of an incarnation since replaced are not recorded (0, in
	// entries written before it was: any).
	Incarnation uint64     `json:"incarnation,omitempty"`
	Nodes       []api.Node `json:"nodes"`
	Cloud       string     `json:"cloud"`
	Region      string     `json:"region"`
	Zone        string     `json:"zone"`
	At          time.Time  `json:"at"`
}

// ClusterStatusSet records an observed cluster status.
type ClusterStatusSet struct {
	Cluster string            `json:"cluster"`
	Status  api.ClusterStatus `json:"status"`
	At      time.Time         `json:"at"`
}

// LaunchFailed records a failed launch or start.
type LaunchFailed struct {
	Cluster string    `json:"cluster"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// ClusterDesired records stop, start or down.
type ClusterDesired struct {
	Cluster string      `json:"cluster"`
	Desired api.Desired `json:"desired"`
	At      time.Time   `json:"at"`
}

// ClusterRemoved records that a cluster's instances are gone.
type ClusterRemoved struct {
	Cluster string `json:"cluster"`
}

// JobTransition records a job state change.
type JobTransition struct {
	Cluster   string        `json:"cluster"`
	JobID     int64         `json:"job_id"`
	Status    api.JobStatus `json:"status"`
	ExitCodes []int         `json:"exit_codes,omitempty"`
	Message   string        `json:"message,omitempty"`
	At        time.Time     `json:"at"`
}

// JobDispatched records that the head accepted a job.
type JobDispatched struct {
	Cluster string `json:"cluster"`
	JobID   int64  `json:"job_id"`
}

// JobCancel records `cancel`.
type JobCancel struct {
	Cluster string    `json:"cluster"`
	JobIDs  []int64   `json:"job_ids,omitempty"`
	All     bool      `json:"all,omitempty"`
	At      time.Time `json:"at"`
}

// CancelDelivered records that the head was told to kill a cancelled job.
type CancelDelivered struct {
	Cluster string `json:"cluster"`
	JobID   int64  `json:"job_id"`
}

// ClusterEvent records a progress line.
type ClusterEvent struct {
	Cluster string    `json:"cluster"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// AttemptStarted records that the launcher tries one offer; a new leader
// that finds it without an outcome retries the same offer with the same
// idempotency key.
type AttemptStarted struct {
	Cluster string      `json:"cluster"`
	Attempt api.Attempt `json:"attempt"`
	At      time.Time   `json:"at"`
}

// AttemptFailed records why an attempt failed and what it blocks.
type AttemptFailed struct {
	Cluster string `json:"cluster"`
	N       int    `json:"n"`
	Reason  string `json:"reason"`
	Scope   string `json:"scope"`
}

// RetryRound records that every offer failed and when, with
// --retry-until-up, the next round starts.
type RetryRound struct {
	Cluster string    `json:"cluster"`
	RetryAt time.Time `json:"retry_at"`
}

// NodeLost records a node that died (gossip's verdict, or the provider
// reporting its instance gone).
type NodeLost struct {
	Cluster string    `json:"cluster"`
	Rank    int       `json:"rank"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// HostKeySet pins a host's SSH key on first use, or forgets it (Key "")
// so the next connection pins a new one.
type HostKeySet struct {
	Host string `json:"host"`
	Key  string `json:"key"`
}

// StoragePut records a bucket, and the cluster that mounts it.
type StoragePut struct {
	Storage api.Storage `json:"storage"`
	Cluster string      `json:"cluster,omitempty"`
}

// StorageRemoved records that a bucket was deleted (or forgotten).
type StorageRemoved struct {
	Name string `json:"name"`
}

// AutostopSet sets (Autostop nil: cancels) a cluster's idle policy.
type AutostopSet struct {
	Cluster  string        `json:"cluster"`
	Autostop *api.Autostop `json:"autostop,omitempty"`
}

// Encode turns a message into a log entry: one type byte, then JSON.
func Encode(t MessageType, msg any) ([]byte, error) {
	body, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode log entry type %d: %w", t, err)
	}
	return append([]byte{byte(t)}, body...), nil
}
