package api

import (
	"time"

	"github.com/sky-coord/sky-coord/spec"
)

// The coordinator's HTTP API, versioned under /v1. Every request carries
// the bearer token.
//
//	GET    /v1/health                       → ServerHealth
//	GET|PUT|POST /v1/chunks/...             the chunk store (transfer.ChunkHandler;
//	                                        agents read, users also upload)
//	POST   /v1/launch                       LaunchRequest → SubmitResponse
//	POST   /v1/plan                         PlanRequest → PlanResponse
//	GET    /v1/check                        → []CloudCheck
//	GET    /v1/ssh-keys                     → []HostKey
//	POST   /v1/ssh-keys/forget              HostKey
//	GET    /v1/clusters/{name}/shell        ?node=R: upgrade to ptystream
//	POST   /v1/clusters/{name}/exec         ExecRequest → SubmitResponse
//	GET    /v1/clusters                     → []Cluster
//	GET    /v1/clusters/{name}              → Cluster
//	POST   /v1/clusters/{name}/stop|start|down
//	GET    /v1/clusters/{name}/jobs         → []Job
//	GET    /v1/clusters/{name}/jobs/{id}    → Job
//	POST   /v1/clusters/{name}/cancel       CancelRequest → CancelResponse
//	GET    /v1/clusters/{name}/jobs/{id}/log ?follow=1&tail=N → text
//	GET    /v1/clusters/{name}/events       ?after=N → []ClusterEvent
//	POST   /v1/agent/job-events             JobEvent (agents)
//	POST   /v1/agent/node-events            NodeEvent (agents)
//	POST   /v1/shutdown                     stop the server

// Cluster is a cluster as the coordinator records it.
type Cluster struct {
	Name       string        `json:"name"`
	Status     ClusterStatus `json:"status"`
	Desired    Desired       `json:"desired"`
	NumNodes   int           `json:"num_nodes"`
	Infra      string        `json:"infra"` // "local", "aws/us-east-1"
	Cloud      string        `json:"cloud"`
	Region     string        `json:"region,omitempty"`
	Zone       string        `json:"zone,omitempty"`
	Resources  string        `json:"resources"` // "3x(cpus=2, mem=4)"
	HeadIP     string        `json:"head_ip,omitempty"`
	User       string        `json:"user,omitempty"`
	LaunchedAt time.Time     `json:"launched_at"`
	// DownAfterJob, when non-zero, tears the cluster down once that job
	// ends (`launch --down`).
	DownAfterJob int64 `json:"down_after_job,omitempty"`
	// Autostop stops (or, with Down, tears down) the cluster once it has
	// been idle (no unfinished job) for IdleMinutes.
	Autostop *Autostop `json:"autostop,omitempty"`
	// UpSince is when the cluster last became UP.
	UpSince time.Time `json:"up_since,omitempty"`
	// Incarnation counts provisionings of this name; it keys the agent
	// token so a relaunched cluster never accepts an old agent.
	Incarnation uint64 `json:"incarnation"`
	Nodes       []Node `json:"nodes,omitempty"`
	LastEvent   string `json:"last_event,omitempty"`
	// Error is set when the last launch or start failed; the controllers
	// leave the cluster alone until the user launches, starts or downs it.
	Error     string         `json:"error,omitempty"`
	Requested spec.Resources `json:"requested_resources"`
	// InstanceType is the chosen offer's instance type.
	InstanceType string `json:"instance_type,omitempty"`
	// HourlyCost is the chosen offer's price for all nodes.
	HourlyCost float64 `json:"hourly_cost,omitempty"`
	// Attempts are the provisioning attempts of this launch, in order;
	// failed ones block their zone, region or cloud for the rest of the
	// round (see Round).
	Attempts []Attempt `json:"attempts,omitempty"`
	// RetryUntilUp keeps trying rounds of attempts, with backoff, until
	// one launches (`launch --retry-until-up`).
	RetryUntilUp bool `json:"retry_until_up,omitempty"`
	// Round counts full rounds of failed attempts; RetryAt is when the
	// next round may start.
	Round   int       `json:"round,omitempty"`
	RetryAt time.Time `json:"retry_at,omitempty"`
	// Clouds are every cloud an attempt touched, so `down` cleans up all.
	Clouds []string `json:"clouds,omitempty"`
}

// Attempt outcomes.
const (
	AttemptRunning  = ""
	AttemptFailed   = "FAILED"
	AttemptLaunched = "LAUNCHED"
)

// Attempt is one try at provisioning a cluster on one offer.
type Attempt struct {
	N            int     `json:"n"`
	Round        int     `json:"round"`
	Cloud        string  `json:"cloud"`
	Region       string  `json:"region,omitempty"`
	Zone         string  `json:"zone,omitempty"`
	InstanceType string  `json:"instance_type,omitempty"`
	Resources    string  `json:"resources"` // "2x p3.2xlarge (V100:1)"
	HourlyCost   float64 `json:"hourly_cost"`
	Outcome      string  `json:"outcome,omitempty"`
	Reason       string  `json:"reason,omitempty"`
	// Scope is what a failure blocks for the rest of the round: "zone",
	// "region" or "cloud".
	Scope     string    `json:"scope,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

// Infra is cloud/region/zone.
func (a Attempt) Infra() string {
	s := a.Cloud
	if a.Region != "" {
		s += "/" + a.Region
	}
	if a.Zone != "" {
		s += "/" + a.Zone
	}
	return s
}

// PlanRequest asks which offers a task would launch on.
type PlanRequest struct {
	Task *spec.Task `json:"task"`
	// DryRun plans over every cloud in the catalog, enabled or not.
	DryRun bool `json:"dry_run,omitempty"`
}

// PlanEntry is one launchable offer; the plan lists them best first.
type PlanEntry struct {
	Cloud        string             `json:"cloud"`
	Region       string             `json:"region"`
	Zone         string             `json:"zone"`
	InstanceType string             `json:"instance_type"`
	Accelerators map[string]float64 `json:"accelerators"`
	NumNodes     int                `json:"num_nodes"`
	HourlyCost   float64            `json:"hourly_cost"`
	UseSpot      bool               `json:"use_spot"`
	VCPUs        float64            `json:"vcpus"`
	MemoryGiB    float64            `json:"memory_gib"`
}

// PlanResponse answers a PlanRequest.
type PlanResponse struct {
	Plan []PlanEntry `json:"plan"`
	// Disabled says, per cloud the plan uses that is not enabled here, why
	// launching there would fail.
	Disabled map[string]string `json:"disabled,omitempty"`
}

// CloudCheck is one line of `sky-coord check`.
type CloudCheck struct {
	Cloud   string `json:"cloud"`
	Enabled bool   `json:"enabled"`
	Reason  string `json:"reason"`
}

// Autostop is a cluster's idle policy.
type Autostop struct {
	IdleMinutes int  `json:"idle_minutes"`
	Down        bool `json:"down,omitempty"`
	// SetAt is when the policy was set: idleness counts from then at the
	// earliest.
	SetAt time.Time `json:"set_at"`
}

// AutostopRequest sets or cancels a cluster's autostop.
type AutostopRequest struct {
	IdleMinutes int  `json:"idle_minutes"`
	Down        bool `json:"down,omitempty"`
	Cancel      bool `json:"cancel,omitempty"`
}

// Node is one instance of a cluster.
type Node struct {
	Rank       int    `json:"rank"` // stable order; 0 = head
	InstanceID string `json:"instance_id"`
	IP         string `json:"ip"`
	AgentAddr  string `json:"agent_addr"`
	CPUs       int    `json:"cpus"`
	GPUs       int    `json:"gpus"`
	Healthy    bool   `json:"healthy"`
	// Lost is set when the node died (preempted, cut off): the cluster
	// stays INIT until `start` or a relaunch brings it back.
	Lost string `json:"lost,omitempty"`
}

// Job is one job of a cluster's queue.
type Job struct {
	ID          int64      `json:"id"`
	Cluster     string     `json:"cluster"`
	Name        string     `json:"name"`
	User        string     `json:"user"`
	Status      JobStatus  `json:"status"`
	SubmittedAt time.Time  `json:"submitted_at"`
	StartedAt   *time.Time `json:"started_at"`
	EndedAt     *time.Time `json:"ended_at"`
	ExitCodes   []int      `json:"exit_codes"`
	NumNodes    int        `json:"num_nodes"`
	Resources   string     `json:"resources"`
	TaskID      string     `json:"task_id"`
	// RunTimestamp is the submission time as SkyPilot formats it
	// (2006-01-02-15-04-05-000000), the middle of TaskID.
	RunTimestamp string `json:"run_timestamp"`
	LogDir       string `json:"log_dir"`
	Message      string `json:"message,omitempty"`
	// Dispatched is set once the head agent accepted the job.
	Dispatched bool `json:"dispatched,omitempty"`
	// CancelPending is set when a dispatched job was cancelled and the
	// head has not yet been told to kill its processes.
	CancelPending bool `json:"cancel_pending,omitempty"`
	// RunSetup is true for launch jobs, false for exec jobs.
	RunSetup bool       `json:"run_setup"`
	Task     *spec.Task `json:"task,omitempty"`
	Blobs    []BlobRef  `json:"blobs,omitempty"`
	Mounts   []MountRef `json:"mounts,omitempty"`
}

// LaunchRequest asks for a cluster (created or reused) and a job on it.
type LaunchRequest struct {
	Cluster string     `json:"cluster"`
	Task    *spec.Task `json:"task"`
	Blobs   []BlobRef  `json:"blobs,omitempty"`
	User    string     `json:"user"`
	Down    bool       `json:"down,omitempty"`
	NoSetup bool       `json:"no_setup,omitempty"`
	// RetryUntilUp keeps retrying provisioning with backoff.
	RetryUntilUp bool `json:"retry_until_up,omitempty"`
	// Autostop, when set, is the cluster's idle policy (`-i N [--down]`).
	Autostop *AutostopRequest `json:"autostop,omitempty"`
	// StorageSources are the manifests of storage objects' local sources,
	// by bucket name: the coordinator writes them into the buckets.
	StorageSources map[string]string `json:"storage_sources,omitempty"`
}

// ExecRequest queues a job on an UP cluster, without setup.
type ExecRequest struct {
	Task  *spec.Task `json:"task"`
	Blobs []BlobRef  `json:"blobs,omitempty"`
	User  string     `json:"user"`
}

// SubmitResponse answers launch and exec.
type SubmitResponse struct {
	Cluster string `json:"cluster"`
	JobID   int64  `json:"job_id"`
}

// CancelRequest names jobs to cancel; All cancels every unfinished job.
type CancelRequest struct {
	JobIDs []int64 `json:"job_ids,omitempty"`
	All    bool    `json:"all,omitempty"`
}

// CancelResponse lists the jobs that were cancelled.
type CancelResponse struct {
	Cancelled []int64 `json:"cancelled"`
}

// ClusterEvent is one line of a cluster's progress (provisioning,
// bootstrap, failures), shown by `launch` while it waits.
type ClusterEvent struct {
	Seq     uint64    `json:"seq"`
	At      time.Time `json:"at"`
	Message string    `json:"message"`
}

// ChunkStoreInfo is GET /v1/chunk-store: where the coordinator keeps
// chunks, for a client on its machine to write there directly.
type ChunkStoreInfo struct {
	// Dir is the store's directory on the coordinator's machine.
	Dir string `json:"dir"`
	// ID is the store's id, as its directory's store-id file holds it.
	ID string `json:"id"`
}

// ServerHealth is the coordinator's own status.
type ServerHealth struct {
	Version string `json:"version"`
	Leader  bool   `json:"leader"`
	PID     int    `json:"pid"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// HostKey is a pinned SSH host key.
type HostKey struct {
	Host string `json:"host"` // host:port
	Key  string `json:"key,omitempty"`
}

// Storage is a bucket sky-coord knows of (`storage ls`).
type Storage struct {
	Name  string `json:"name"`
	Store string `json:"store"` // s3, gcs, r2
	URL   string `json:"url"`   // s3://name
	// Managed buckets were created by sky-coord and are deleted by
	// `storage delete` (and, when not Persistent, by `down`); others are
	// only forgotten.
	Managed    bool      `json:"managed"`
	Persistent bool      `json:"persistent"`
	Clusters   []string  `json:"clusters,omitempty"` // clusters that mount it
	CreatedAt  time.Time `json:"created_at"`
}

// Member is one coordinator replica (`server members`).
type Member struct {
	ID          string `json:"id"`
	Address     string `json:"address"` // its API address
	RaftAddress string `json:"raft_address"`
	State       string `json:"state"` // leader, follower, candidate, ...
	Leader      bool   `json:"leader"`
}
