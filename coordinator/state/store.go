// Package state is the coordinator's in-memory store of clusters, nodes and
// jobs: the only code that mutates replicated data. It is deterministic:
// log indexes, times and IDs come in as arguments, never from a clock, a
// random source or I/O, so every replica applying the same log ends in the
// same state.
package state

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// Sentinel errors returned by store methods.
var (
	// ErrNotFound means the named cluster or job does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the change does not fit the current state (a job
	// moving backwards, a cluster in the wrong status).
	ErrConflict = errors.New("conflict")
)

// maxEvents bounds the progress events kept per cluster.
const maxEvents = 200

// Store holds the replicated state. It is not safe for concurrent use; the
// FSM serializes access.
type Store struct {
	Clusters map[string]*api.Cluster `json:"clusters"`
	// Jobs holds each cluster's queue in ID order.
	Jobs map[string][]*api.Job `json:"jobs"`
	// NextJobID is per cluster name, kept across teardowns so a relaunched
	// cluster never reuses the ID (and log directory) of an old job.
	NextJobID map[string]int64              `json:"next_job_id"`
	Events    map[string][]api.ClusterEvent `json:"events"`
	EventSeq  uint64                        `json:"event_seq"`
	// Incarnations counts launches per cluster name, across teardowns.
	Incarnations map[string]uint64 `json:"incarnations"`
	// HostKeys pins SSH host keys ("ssh-ed25519 AAAA…") by host:port,
	// first seen on first use.
	HostKeys map[string]string `json:"host_keys,omitempty"`
	// Storages are the buckets sky-coord knows of, by name.
	Storages map[string]*api.Storage `json:"storages,omitempty"`
}

// PutStorage records a bucket (or a cluster's use of it).
func (s *Store) PutStorage(st api.Storage, cluster string) {
	if s.Storages == nil {
		s.Storages = map[string]*api.Storage{}
	}
	cur, ok := s.Storages[st.Name]
	if !ok {
		cp := st
		cp.Clusters = nil
		cur = &cp
		s.Storages[st.Name] = cur
	}
	if cluster != "" && !slices.Contains(cur.Clusters, cluster) {
		cur.Clusters = append(cur.Clusters, cluster)
		sort.Strings(cur.Clusters)
	}
}

// RemoveStorage forgets a bucket.
func (s *Store) RemoveStorage(name string) { delete(s.Storages, name) }

// ListStorages returns copies of the known buckets by name.
func (s *Store) ListStorages() []api.Storage {
	var out []api.Storage
	for _, st := range s.Storages {
		cp := *st
		cp.Clusters = append([]string(nil), st.Clusters...)
		out = append(out, cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SetHostKey pins (or, with key "", forgets) a host's SSH key.
func (s *Store) SetHostKey(host, key string) {
	if s.HostKeys == nil {
		s.HostKeys = map[string]string{}
	}
	if key == "" {
		delete(s.HostKeys, host)
		return
	}
	s.HostKeys[host] = key
}

// New returns an empty store.
func New() *Store {
	return &Store{
		Clusters:     map[string]*api.Cluster{},
		Jobs:         map[string][]*api.Job{},
		NextJobID:    map[string]int64{},
		Events:       map[string][]api.ClusterEvent{},
		Incarnations: map[string]uint64{},
	}
}

// Cluster returns a deep copy of the named cluster.
func (s *Store) Cluster(name string) (*api.Cluster, error) {
	c, ok := s.Clusters[name]
	if !ok {
		return nil, fmt.Errorf("cluster %q: %w", name, ErrNotFound)
	}
	return copyCluster(c), nil
}

// ListClusters returns copies of every cluster, sorted by name.
func (s *Store) ListClusters() []*api.Cluster {
	out := make([]*api.Cluster, 0, len(s.Clusters))
	for _, c := range s.Clusters {
		out = append(out, copyCluster(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Job returns a copy of one job.
func (s *Store) Job(cluster string, id int64) (*api.Job, error) {
	j := s.job(cluster, id)
	if j == nil {
		return nil, fmt.Errorf("job %d of cluster %q: %w", id, cluster, ErrNotFound)
	}
	return copyJob(j), nil
}

// ListJobs returns copies of a cluster's jobs in ID order.
func (s *Store) ListJobs(cluster string) []*api.Job {
	jobs := s.Jobs[cluster]
	out := make([]*api.Job, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, copyJob(j))
	}
	return out
}

// EventsAfter returns a cluster's events with Seq > after.
func (s *Store) EventsAfter(cluster string, after uint64) []api.ClusterEvent {
	var out []api.ClusterEvent
	for _, e := range s.Events[cluster] {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out
}

func (s *Store) job(cluster string, id int64) *api.Job {
	jobs := s.Jobs[cluster]
	i := sort.Search(len(jobs), func(i int) bool { return jobs[i].ID >= id })
	if i < len(jobs) && jobs[i].ID == id {
		return jobs[i]
	}
	return nil
}

// AddEvent appends a progress line to a cluster's event list.
func (s *Store) AddEvent(cluster, msg string, at time.Time) {
	if ev := s.Events[cluster]; len(ev) > 0 && ev[len(ev)-1].Message == msg {
		return // a retry repeating itself is one event
	}
	s.EventSeq++
	ev := append(s.Events[cluster], api.ClusterEvent{Seq: s.EventSeq, At: at, Message: msg})
	if len(ev) > maxEvents {
		ev = ev[len(ev)-maxEvents:]
	}
	s.Events[cluster] = ev
	if c, ok := s.Clusters[cluster]; ok {
		c.LastEvent = msg
	}
}

func copyCluster(c *api.Cluster) *api.Cluster {
	cp := *c
	cp.Nodes = append([]api.Node(nil), c.Nodes...)
	return &cp
}

func copyJob(j *api.Job) *api.Job {
	cp := *j
	cp.ExitCodes = append([]int(nil), j.ExitCodes...)
	cp.Blobs = append([]api.BlobRef(nil), j.Blobs...)
	return &cp
}
