package api

// The agent's HTTP API. Every request carries the cluster's bearer token.
//
//	GET  /v1/health                 → AgentHealth
//	POST /v1/jobs                   AgentJob (head only): run the pipeline
//	POST /v1/jobs/{id}/cancel       stop a job's processes on every node
//	GET  /v1/jobs/{id}/log          ?follow=1&tail=N: the job's run.log
//	POST /v1/node/sync              NodeSyncRequest: fetch chunks, apply manifests
//	GET|POST /v1/chunks/...         this node's chunk store, read-only (peers pull)
//	POST /v1/node/exec              NodeExecRequest → stream of ExecFrame
//	POST /v1/node/kill              NodeKillRequest
//	POST /v1/node/flush             wait until MOUNT_CACHED writes are in their buckets
//	POST /v1/shutdown               stop every job process, then exit
//
// The coordinator speaks to the head (rank 0) only; the head drives the
// other nodes through the /v1/node/ endpoints, as SkyPilot's Ray driver does.

// AgentPort is the TCP port agents listen on, on their node's own address.
//
// It and GossipPort lie below Linux's ephemeral range (32768-60999): a
// connection to a port in that range on the node's own address, made
// while nothing listens there (sshd forwarding a health check before the
// agent is up, say), can be given that very port as its source and
// connect to itself, and then holds the port the agent is about to bind.
const AgentPort = 26590

// AgentConfig is the file bootstrap writes beside the agent (mode 0600).
type AgentConfig struct {
	Cluster        string `json:"cluster"`
	Rank           int    `json:"rank"` // index in the cluster's stable order; 0 = head
	NodeID         string `json:"node_id"`
	IP             string `json:"ip"`
	Bind           string `json:"bind"` // host:port the agent listens on
	Home           string `json:"home"` // the node's home directory ("~")
	CoordinatorURL string `json:"coordinator_url"`
	// CoordinatorURLs are every coordinator replica (replicated mode):
	// reports go to CoordinatorURL, then to the others while it fails.
	CoordinatorURLs []string `json:"coordinator_urls,omitempty"`
	Token           string   `json:"token"`
	// Marker is set in the environment of the agent and of every process
	// it starts (SKY_COORD_NODE=Marker), so a provider can find every
	// process of a node, including ones that left their process group.
	Marker string `json:"marker"`
	CPUs   int    `json:"cpus"`
	GPUs   int    `json:"gpus"`
	// PrivateMounts gives the node a private view of file_mounts
	// destinations outside its home: nodes that share a machine (the
	// local provider) each see their own /data.
	PrivateMounts bool `json:"private_mounts,omitempty"`
	// ChunkDir is the node's chunk store (code sync); empty means
	// ~/.sky/chunks. Nodes on the coordinator's machine (the local
	// provider) use the coordinator's store, shared with it and each
	// other, so a chunk is on the machine once, not once per node.
	ChunkDir string `json:"chunk_dir,omitempty"`
	// TreeDir, for nodes that share a machine, is where a synced tree is
	// written once for all of them; a node whose copy is new mounts it
	// copy-on-write (as root) instead of writing its own. Empty: every
	// node writes its own copy.
	TreeDir string `json:"tree_dir,omitempty"`
	// Gossip: the cluster's agents form a memberlist cluster on
	// GossipBind (IP:GossipPort), encrypted with GossipKey (base64, 32
	// bytes, made by the coordinator per cluster incarnation), joining
	// through Peers (every node's gossip address, head first).
	GossipBind string   `json:"gossip_bind,omitempty"`
	GossipKey  string   `json:"gossip_key,omitempty"`
	Peers      []string `json:"peers,omitempty"`
}

// GossipPort is the memberlist port agents use on their node's address
// (below the ephemeral range, as AgentPort is).
const GossipPort = 26591

// NodeMeta is what each agent tells the others by gossip.
type NodeMeta struct {
	ID      string `json:"id"`
	Rank    int    `json:"rank"`
	IP      string `json:"ip"`
	Addr    string `json:"addr"` // agent API address
	GPUs    int    `json:"gpus"`
	Version string `json:"version"`
	State   string `json:"state"` // "ready"
}

// NodeEvent is what an agent reports about another node: the head about a
// worker it lost, a surviving worker about a lost head.
type NodeEvent struct {
	Cluster  string `json:"cluster"`
	Rank     int    `json:"rank"`
	NodeID   string `json:"node_id"`
	IP       string `json:"ip"`
	Lost     bool   `json:"lost"`
	Reason   string `json:"reason"`
	Reporter int    `json:"reporter"` // rank of the reporting node
}

// MarkerEnv is the environment variable that carries AgentConfig.Marker.
const MarkerEnv = "SKY_COORD_NODE"

// AgentHealth is what a running agent reports about itself.
type AgentHealth struct {
	Version    string `json:"version"`
	Cluster    string `json:"cluster"`
	Rank       int    `json:"rank"`
	NodeID     string `json:"node_id"`
	ConfigHash string `json:"config_hash"`
	PID        int    `json:"pid"`
	CPUs       int    `json:"cpus"`
	GPUs       int    `json:"gpus"`
	// Jobs are the IDs of every job this agent was handed since it
	// started (running or ended): a dispatched job missing here was lost
	// with a previous agent process.
	Jobs []int64 `json:"jobs,omitempty"`
	// Members are the live nodes this agent sees by gossip, by rank.
	Members []NodeMeta `json:"members,omitempty"`
}

// AgentNode is one node of a cluster as the head sees it.
type AgentNode struct {
	Rank int    `json:"rank"` // stable order index; 0 = head
	IP   string `json:"ip"`
	Addr string `json:"addr"` // agent host:port
}

// BlobRef names an uploaded tree (or file) and where it goes on a node.
type BlobRef struct {
	Digest string `json:"digest"` // the manifest's id (BLAKE3 hex)
	// Dest is where it goes: "~/sky_workdir", "~/data", a relative path
	// (under ~/sky_workdir), or an absolute path.
	Dest string `json:"dest"`
	// File is true when the manifest describes one file to be placed at
	// Dest, false when it describes a directory tree merged into Dest.
	File bool `json:"file,omitempty"`
	// Delta, when set, is an encoded transfer.Delta to this manifest
	// from the one the client described the tree as before: a head that
	// synced that one builds this from it, without fetching it. At most
	// MaxBlobDelta bytes.
	Delta []byte `json:"delta,omitempty"`
}

// MaxBlobDelta bounds BlobRef.Delta: jobs are kept in the replicated
// log, and a bigger change is synced from the manifest anyway.
const MaxBlobDelta = 64 << 10

// AgentJob is a job handed by the coordinator to the head agent.
type AgentJob struct {
	JobID    int64       `json:"job_id"`
	Name     string      `json:"name"`
	TaskID   string      `json:"task_id"` // SKYPILOT_TASK_ID
	LogDir   string      `json:"log_dir"` // under ~/sky_logs, e.g. "3-train"
	Cluster  string      `json:"cluster"`
	User     string      `json:"user"`
	Nodes    []AgentNode `json:"nodes"`     // every node of the cluster, stable order
	NumNodes int         `json:"num_nodes"` // run on Nodes[:NumNodes]
	// Setup is run on every node first; empty means no setup step.
	Setup          string            `json:"setup,omitempty"`
	Run            string            `json:"run,omitempty"`
	Envs           map[string]string `json:"envs,omitempty"` // user envs and secrets
	NumGPUsPerNode int               `json:"num_gpus_per_node"`
	ClusterInfo    string            `json:"cluster_info"` // SKYPILOT_CLUSTER_INFO
	Blobs          []BlobRef         `json:"blobs,omitempty"`
	Mounts         []MountRef        `json:"mounts,omitempty"`
	MountEnv       map[string]string `json:"mount_env,omitempty"`
	// TaskName is the prefix of a single-node cluster's log lines.
	TaskName string `json:"task_name,omitempty"`
	// SecretNames are the Envs keys whose values must never be logged.
	SecretNames []string `json:"secret_names,omitempty"`
}

// JobEvent is a job state change reported by the head to the coordinator:
// POST {coordinator}/v1/agent/job-events.
type JobEvent struct {
	Cluster   string    `json:"cluster"`
	JobID     int64     `json:"job_id"`
	Status    JobStatus `json:"status"`
	ExitCodes []int     `json:"exit_codes,omitempty"`
	Message   string    `json:"message,omitempty"`
}

// MountRef is a bucket a node puts in place before setup.
type MountRef struct {
	Dst  string `json:"dst"`  // as written: absolute, ~/..., or relative to ~/sky_workdir
	URL  string `json:"url"`  // s3://b/p, gs://b/p, r2://b/p
	Mode string `json:"mode"` // COPY, MOUNT or MOUNT_CACHED
	// ReadOnly, CacheBytes and Transfers tune MOUNT and MOUNT_CACHED.
	ReadOnly   bool  `json:"read_only,omitempty"`
	CacheBytes int64 `json:"cache_bytes,omitempty"`
	Transfers  int   `json:"transfers,omitempty"`
}

// FlushResponse says what a node's flush of its cached mounts uploaded.
type FlushResponse struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

// NodeSyncRequest asks a node to bring the trees named by Blobs (manifest
// ids) into place: it pulls the chunks it lacks from Origins (agent
// addresses; the coordinator when empty) and, peer to peer, from Peers
// (the agent addresses of every node syncing now, itself at index Self).
type NodeSyncRequest struct {
	Blobs []BlobRef `json:"blobs"`
	// Mounts are put in place after the blobs, with MountEnv (the
	// credentials the stores need; never logged) in the agent's
	// environment.
	Mounts   []MountRef        `json:"mounts,omitempty"`
	MountEnv map[string]string `json:"mount_env,omitempty"`
	Origins  []string          `json:"origins,omitempty"`
	Peers    []string          `json:"peers,omitempty"`
	Self     int               `json:"self,omitempty"`
	// Deltas are manifest deltas (encoded transfer.Delta), by the digest
	// of the manifest they lead to, from the one the sender last synced:
	// a node that synced that one too builds the new manifest from it
	// and the delta, and fetches none.
	Deltas map[string][]byte `json:"deltas,omitempty"`
}

// NodeExecRequest asks a node to run a script under a pty.
type NodeExecRequest struct {
	JobID int64  `json:"job_id"`
	Kind  string `json:"kind"` // "setup" or "run"
	// Script is a complete bash script (the agent writes and runs it).
	Script string            `json:"script"`
	Env    map[string]string `json:"env"`
	// LogPath is the node-local log file, relative to the node's home.
	LogPath string `json:"log_path"`
}

// ExecFrame is one newline-delimited JSON frame of a NodeExec stream: the
// first carries PID, then Data frames, and the last carries Exit.
type ExecFrame struct {
	PID  int    `json:"pid,omitempty"`
	Data []byte `json:"data,omitempty"`
	Exit *int   `json:"exit,omitempty"`
	Err  string `json:"err,omitempty"`
}

// NodeKillRequest asks a node to kill a job's processes.
type NodeKillRequest struct {
	JobID int64 `json:"job_id"`
}
