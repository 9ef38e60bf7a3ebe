package fsm

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/coordinator/state"
)

// TestEveryMessageTypeHasACase applies each known type: none may reach the
// unknown-type panic.
func TestEveryMessageTypeHasACase(t *testing.T) {
	f := New(nil)
	for typ := MessageType(1); typ <= LastMessageType; typ++ {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("message type %d has no case in Apply: %v", typ, r)
				}
			}()
			f.Apply(&raft.Log{Type: raft.LogCommand, Data: append([]byte{byte(typ)}, "{}"...)})
		}()
	}
}

func TestUnknownTypeWithIgnoreFlagIsSkipped(t *testing.T) {
	f := New(nil)
	res := f.Apply(&raft.Log{Type: raft.LogCommand, Data: []byte{byte(IgnoreUnknownFlag | 99), '{', '}'}})
	if r := res.(Result); r.Err != nil {
		t.Fatalf("ignorable entry: %v", r.Err)
	}
}

func apply(t *testing.T, f *FSM, typ MessageType, msg any) Result {
	t.Helper()
	data, err := Encode(typ, msg)
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(&raft.Log{Type: raft.LogCommand, Data: data}).(Result)
}

type sink struct{ bytes.Buffer }

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { return nil }
func (s *sink) Close() error  { return nil }

// TestSnapshotRestoreRoundTrip checks a restored FSM holds the same state.
func TestSnapshotRestoreRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	f := New(nil)
	r := apply(t, f, ClusterLaunchType, ClusterLaunch{Cluster: api.Cluster{Name: "c", NumNodes: 2},
		Job: api.Job{Name: "j", NumNodes: 2, RunTimestamp: "2026-11-29-12-00-00-000000"}, At: at})
	if r.Err != nil || r.JobID != 1 {
		t.Fatalf("launch: %+v", r)
	}
	apply(t, f, NodesRecordedType, NodesRecorded{Cluster: "c", Nodes: []api.Node{{Rank: 0, IP: "127.0.1.1"}, {Rank: 1, IP: "127.0.1.2"}}, Cloud: "local", At: at})
	apply(t, f, ClusterStatusType, ClusterStatusSet{Cluster: "c", Status: api.ClusterUp, At: at})
	apply(t, f, JobTransitionType, JobTransition{Cluster: "c", JobID: 1, Status: api.JobRunning, At: at})

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	g := New(nil)
	if err := g.Restore(io.NopCloser(&s.Buffer)); err != nil {
		t.Fatal(err)
	}
	var want, got *state.Store
	f.Read(func(st *state.Store) { want = st })
	g.Read(func(st *state.Store) { got = st })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored state (-want +got):\n%s", diff)
	}
}

// Nodes provisioned for an incarnation of a cluster since downed and
// launched again are not recorded over the new incarnation's.
func TestNodesOfAnOldIncarnationAreRefused(t *testing.T) {
	at := time.Date(2026, 12, 5, 2, 0, 0, 0, time.UTC)
	f := New(nil)
	launch := func() uint64 {
		t.Helper()
		if r := apply(t, f, ClusterLaunchType, ClusterLaunch{Cluster: api.Cluster{Name: "c", NumNodes: 2},
			Job: api.Job{NumNodes: 2, RunTimestamp: "2026-12-05-02-00-00-000000"}, At: at}); r.Err != nil {
			t.Fatal(r.Err)
		}
		var inc uint64
		f.Read(func(st *state.Store) { inc = st.Clusters["c"].Incarnation })
		return inc
	}
	old := launch()
	apply(t, f, ClusterRemovedType, ClusterRemoved{Cluster: "c"})
	now := launch()
	two := []api.Node{{Rank: 0, IP: "127.0.1.1"}, {Rank: 1, IP: "127.0.1.2"}}
	if r := apply(t, f, NodesRecordedType, NodesRecorded{Cluster: "c", Incarnation: now, Nodes: two, Cloud: "local", At: at}); r.Err != nil {
		t.Fatalf("nodes of the current incarnation %d: %v", now, r.Err)
	}
	r := apply(t, f, NodesRecordedType, NodesRecorded{Cluster: "c", Incarnation: old, Nodes: two[:1], Cloud: "local", At: at})
	if !errors.Is(r.Err, state.ErrConflict) {
		t.Errorf("nodes of the old incarnation %d (now %d): err %v, want a conflict", old, now, r.Err)
	}
	f.Read(func(st *state.Store) {
		if n := len(st.Clusters["c"].Nodes); n != 2 {
			t.Errorf("the cluster has %d nodes after the old incarnation's were refused; want its 2", n)
		}
	})
}
