// Package spec is SkyPilot's task YAML: types, parsing with
// file:line:column errors, defaults, validation, --env overrides and ${VAR}
// substitution. It is pure: it reads the bytes it is given.
package spec

import (
	"encoding/json"
	"math"
	"strings"
)

// Task is one task of a task file, after overrides and substitution.
// It travels as JSON from the client to the coordinator.
type Task struct {
	Name string `json:"name,omitempty"`
	// Workdir is the local path as written (the caller resolves it
	// against its working directory), or a git repository.
	Workdir    string            `json:"workdir,omitempty"`
	WorkdirGit *GitWorkdir       `json:"workdir_git,omitempty"`
	NumNodes   int               `json:"num_nodes"`
	Resources  Resources         `json:"resources"`
	Envs       map[string]string `json:"envs,omitempty"`
	Secrets    map[string]string `json:"secrets,omitempty"`
	// ManagedSecrets are references to secrets stored by the server
	// (`secrets: [secrets:NAME]`, `secrets:NAME: null`, `managed_secrets`).
	ManagedSecrets []ManagedSecret `json:"managed_secrets,omitempty"`
	// UnsetEnvs and UnsetSecrets name the envs/secrets still null after
	// the overrides; only filled when Options.AllowUnset is set (otherwise
	// each is an error).
	UnsetEnvs    []string `json:"unset_envs,omitempty"`
	UnsetSecrets []string `json:"unset_secrets,omitempty"`
	// FileMounts is sorted by Dst.
	FileMounts []FileMount `json:"file_mounts,omitempty"`
	// Volumes are the task's `volumes` (persistent or ephemeral volumes
	// mounted by path), sorted by Path.
	Volumes       []VolumeMount `json:"volumes,omitempty"`
	Setup         string        `json:"setup,omitempty"`
	Run           string        `json:"run,omitempty"`
	EventCallback string        `json:"event_callback,omitempty"`
	Service       *Service      `json:"service,omitempty"`
	Pool          *Pool         `json:"pool,omitempty"`
	// Config is the task's `config` section (overrides of sky-coord's
	// configuration, e.g. kubernetes.pod_config), as compact JSON.
	Config  json.RawMessage `json:"config,omitempty"`
	Inputs  *DataEstimate   `json:"inputs,omitempty"`
	Outputs *DataEstimate   `json:"outputs,omitempty"`
	// APIServerAccess is `api_server_access` (nil: the default, true).
	APIServerAccess *bool `json:"api_server_access,omitempty"`
}

// GitWorkdir is `workdir: {url, ref}`.
type GitWorkdir struct {
	URL string `json:"url"`
	Ref string `json:"ref,omitempty"`
}

// ManagedSecret is a reference to a secret kept by the server.
type ManagedSecret struct {
	Name string `json:"name"`
	// Scope is "personal", "workspace", "global" or "" (the default).
	Scope     string `json:"scope,omitempty"`
	MountPath string `json:"mount_path,omitempty"`
}

// FileMount is one entry of `file_mounts`, keyed by its destination.
type FileMount struct {
	Dst string `json:"dst"`
	// Src is a local path or a URI (s3://, gs://, ...) when the entry is
	// a plain string.
	Src string `json:"src,omitempty"`
	// Storage is set when the entry is a storage object (a bucket).
	Storage *Storage `json:"storage,omitempty"`
}

// VolumeMount is one entry of the task's `volumes`.
type VolumeMount struct {
	Path string `json:"path"`
	// Name is the volume's name (`/mnt: NAME` or `{name: NAME}`).
	Name    string `json:"name,omitempty"`
	SubPath string `json:"sub_path,omitempty"`
	// Size is set for an ephemeral volume created with the task, e.g. "10Gi".
	Size   string            `json:"size,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Config is the rest of an ephemeral volume's spec, as compact JSON.
	Config json.RawMessage `json:"config,omitempty"`
}

// DataEstimate is the experimental `inputs`/`outputs`: {PATH: SIZE_GB}.
type DataEstimate struct {
	Path   string  `json:"path"`
	SizeGB float64 `json:"size_gb"`
}

// NumGPUsPerNode is SKYPILOT_NUM_GPUS_PER_NODE: the ceiling of the first
// (preferred) accelerator's count, 0 with no accelerator or with a
// schedulable accelerator that is not a GPU (TPU, Inferentia, Trainium).
func (t *Task) NumGPUsPerNode() int {
	acc := t.Resources.Accelerators
	if acc == nil || !acc.IsGPU() {
		return 0
	}
	return int(math.Ceil(acc.Count))
}

// IsGPU reports whether the accelerator is a GPU (not a TPU or another
// schedulable non-GPU accelerator).
func (a *Accelerator) IsGPU() bool {
	n := strings.ToLower(a.Name)
	for _, p := range []string{"tpu", "inferentia", "trainium"} {
		if strings.HasPrefix(n, p) {
			return false
		}
	}
	return true
}
