// Package fsm is the coordinator's Raft state machine: the log entry
// types, their encoding, the one Apply switch, and snapshot and restore.
// It has no network, no clock and no randomness: every replica that
// applies the same log reaches the same state.
package fsm

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/sky-coord/sky-coord/coordinator/state"
)

// Result is what Apply returns through raft's ApplyFuture.Response.
type Result struct {
	JobID     int64
	Cancelled []int64
	Err       error
}

// FSM applies log entries to a state.Store.
type FSM struct {
	mu    sync.RWMutex
	store *state.Store
	// notify, when set, is called after every applied entry (outside the
	// lock), so controllers can wake without polling.
	notify func()
}

var _ raft.FSM = (*FSM)(nil)

// New returns an FSM over an empty store. notify may be nil.
func New(notify func()) *FSM {
	return &FSM{store: state.New(), notify: notify}
}

// Read runs f with the store under a read lock. f must not keep
// references to the store's data past its return.
func (f *FSM) Read(fn func(*state.Store)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.store)
}

// Apply decodes one log entry and calls one store method.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		return nil
	}
	res := f.apply(MessageType(l.Data[0]), l.Data[1:])
	if f.notify != nil {
		f.notify()
	}
	return res
}

func (f *FSM) apply(t MessageType, body []byte) Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.store
	switch t &^ IgnoreUnknownFlag {
	case ClusterLaunchType:
		return as(body, func(m ClusterLaunch) Result {
			id, err := s.Launch(m.Cluster, m.Job, m.At)
			return Result{JobID: id, Err: err}
		})
	case JobSubmitType:
		return as(body, func(m JobSubmit) Result {
			id, err := s.SubmitJob(m.Cluster, m.Job, m.At)
			return Result{JobID: id, Err: err}
		})
	case NodesRecordedType:
		return as(body, func(m NodesRecorded) Result {
			return Result{Err: s.RecordNodes(m.Cluster, m.Incarnation, m.Nodes, m.Cloud, m.Region, m.Zone, m.At)}
		})
	case ClusterStatusType:
		return as(body, func(m ClusterStatusSet) Result { return Result{Err: s.SetClusterStatus(m.Cluster, m.Status, m.At)} })
	case LaunchFailedType:
		return as(body, func(m LaunchFailed) Result { return Result{Err: s.LaunchFailed(m.Cluster, m.Reason, m.At)} })
	case ClusterDesiredType:
		return as(body, func(m ClusterDesired) Result { return Result{Err: s.SetDesired(m.Cluster, m.Desired, m.At)} })
	case ClusterRemovedType:
		return as(body, func(m ClusterRemoved) Result { return Result{Err: s.RemoveCluster(m.Cluster)} })
	case JobTransitionType:
		return as(body, func(m JobTransition) Result {
			return Result{Err: s.TransitionJob(m.Cluster, m.JobID, m.Status, m.ExitCodes, m.Message, m.At)}
		})
	case JobDispatchedType:
		return as(body, func(m JobDispatched) Result { return Result{Err: s.MarkDispatched(m.Cluster, m.JobID)} })
	case JobCancelType:
		return as(body, func(m JobCancel) Result {
			ids, err := s.CancelJobs(m.Cluster, m.JobIDs, m.All, m.At)
			return Result{Cancelled: ids, Err: err}
		})
	case CancelDeliveredType:
		return as(body, func(m CancelDelivered) Result { return Result{Err: s.CancelDelivered(m.Cluster, m.JobID)} })
	case ClusterEventType:
		return as(body, func(m ClusterEvent) Result {
			s.AddEvent(m.Cluster, m.Message, m.At)
			return Result{}
		})
	case AttemptStartedType:
		return as(body, func(m AttemptStarted) Result { return Result{Err: s.StartAttempt(m.Cluster, m.Attempt, m.At)} })
	case AttemptFailedType:
		return as(body, func(m AttemptFailed) Result { return Result{Err: s.FailAttempt(m.Cluster, m.N, m.Reason, m.Scope)} })
	case RetryRoundType:
		return as(body, func(m RetryRound) Result { return Result{Err: s.NextRound(m.Cluster, m.RetryAt)} })
	case HostKeySetType:
		return as(body, func(m HostKeySet) Result {
			s.SetHostKey(m.Host, m.Key)
			return Result{}
		})
	case StoragePutType:
		return as(body, func(m StoragePut) Result {
			s.PutStorage(m.Storage, m.Cluster)
			return Result{}
		})
	case StorageRemovedType:
		return as(body, func(m StorageRemoved) Result {
			s.RemoveStorage(m.Name)
			return Result{}
		})
	case AutostopSetType:
		return as(body, func(m AutostopSet) Result { return Result{Err: s.SetAutostop(m.Cluster, m.Autostop)} })
	case NodeLostType:
		return as(body, func(m NodeLost) Result { return Result{Err: s.LoseNode(m.Cluster, m.Rank, m.Reason, m.At)} })
	}
	if t&IgnoreUnknownFlag != 0 {
		return Result{}
	}
	// An unknown type means this binary is older than the log: stopping is
	// the only safe answer, as replaying past it would diverge.
	panic(fmt.Sprintf("fsm: unknown log entry type %d; upgrade this replica", t))
}

// as decodes a log entry's body into M and hands it to fn.
func as[M any](body []byte, fn func(M) Result) Result {
	var m M
	if err := json.Unmarshal(body, &m); err != nil {
		return Result{Err: fmt.Errorf("decode log entry: %w", err)}
	}
	return fn(m)
}

// Snapshot captures the whole store. It marshals under the read lock, so
// Persist only writes bytes.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	data, err := json.Marshal(f.store)
	if err != nil {
		return nil, fmt.Errorf("snapshot state: %w", err)
	}
	return snapshot(data), nil
}

// Restore replaces the store with a snapshot's: it builds a new store,
// then swaps it in under the lock.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	fresh := state.New()
	if err := json.NewDecoder(rc).Decode(fresh); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.store = fresh
	f.mu.Unlock()
	if f.notify != nil {
		f.notify()
	}
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s snapshot) Release() {}
