// Package spec is SkyPilot's task YAML: types, parsing with
// file:line:column errors, defaults, validation, --env overrides and ${VAR}
// substitution. It is pure: it reads the bytes it is given.
package spec

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
	FileMounts []FileMount       `json:"file_mounts,omitempty"`
	Setup      string            `json:"setup,omitempty"`
	Run        string            `json:"run,omitempty"`
}

// GitWorkdir is `workdir: {url, ref}`.
type GitWorkdir struct {
	URL string `json:"url"`
	Ref string `json:"ref,omitempty"`
}

// FileMount is one entry of `file_mounts`, keyed by its destination.
type FileMount struct {
	Dst string `json:"dst"`
	// Src is a local path or a URI (s3://, gs://, ...) when the entry is
	// a plain string.
	Src string `json:"src,omitempty"`
}

// Resources is a task's `resources` section.
type Resources struct {
	Cloud  string `json:"cloud,omitempty"`
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	CPUs   string `json:"cpus,omitempty"`   // "4" or "4+"
	Memory string `json:"memory,omitempty"` // "16" or "16+" (GB)
	// Accelerators is the requested accelerator, e.g. {Name: "V100", Count: 1}.
	Accelerators *Accelerator `json:"accelerators,omitempty"`
}

// Accelerator is NAME[:COUNT].
type Accelerator struct {
	Name  string  `json:"name"`
	Count float64 `json:"count"`
}
