package spec

import (
	"strconv"
)

// DefaultDiskSizeGB is the OS disk size when a task sets none.
const DefaultDiskSizeGB = 256

// Resources is a task's `resources` section.
//
// With `any_of` or `ordered`, the top-level fields are the outer defaults
// and AnyOf/Ordered hold the candidates with those defaults already merged
// in; Candidates() returns the concrete list the optimizer considers.
type Resources struct {
	// Cloud is lower case ("aws", "gcp", "kubernetes", "local", ...);
	// empty means any. Region and Zone are empty for any.
	Cloud  string `json:"cloud,omitempty"`
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	CPUs   string `json:"cpus,omitempty"`   // "4" or "4+"
	Memory string `json:"memory,omitempty"` // "16" or "16+" (GB)
	// Accelerators is the requested (first, preferred) accelerator, e.g.
	// {Name: "V100", Count: 1}. With any_of/ordered and no outer
	// accelerator, it is the first candidate's.
	Accelerators *Accelerator `json:"accelerators,omitempty"`
	// AcceleratorChoices is the full list when several accelerators are
	// acceptable (`{A100: 1, V100: 1}` or a list), in the order written;
	// AcceleratorsOrdered is true for the list form (tried in order),
	// false for the mapping form (the optimizer picks the cheapest).
	AcceleratorChoices  []Accelerator    `json:"accelerator_choices,omitempty"`
	AcceleratorsOrdered bool             `json:"accelerators_ordered,omitempty"`
	AcceleratorArgs     *AcceleratorArgs `json:"accelerator_args,omitempty"`
	InstanceType        string           `json:"instance_type,omitempty"`
	UseSpot             bool             `json:"use_spot,omitempty"`
	JobRecovery         *JobRecovery     `json:"job_recovery,omitempty"`
	// DiskSize is the OS disk in GB (DefaultDiskSizeGB when unset).
	DiskSize int `json:"disk_size"`
	// DiskTier is low, medium, high, ultra, best or none; NetworkTier is
	// standard or best.
	DiskTier      string  `json:"disk_tier,omitempty"`
	NetworkTier   string  `json:"network_tier,omitempty"`
	LocalDisk     string  `json:"local_disk,omitempty"`
	MaxHourlyCost float64 `json:"max_hourly_cost,omitempty"`
	// Ports are simplified ranges: "8080", "10022-10040", sorted.
	Ports  []string          `json:"ports,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// ImageID is the image for every region ("ami-...", "docker:IMAGE");
	// ImageIDByRegion is the per-region mapping form.
	ImageID         string            `json:"image_id,omitempty"`
	ImageIDByRegion map[string]string `json:"image_id_by_region,omitempty"`
	Autostop        *Autostop         `json:"autostop,omitempty"`
	Priority        *int              `json:"priority,omitempty"`
	PriorityClass   string            `json:"priority_class,omitempty"`
	Volumes         []DiskVolume      `json:"volumes,omitempty"`
	AnyOf           []Resources       `json:"any_of,omitempty"`
	Ordered         []Resources       `json:"ordered,omitempty"`
}

// Accelerator is NAME[:COUNT], or a memory request ("80GB+",
// "nvidia:24GB:2") that the catalog expands to the GPUs that match.
type Accelerator struct {
	Name  string  `json:"name"`
	Count float64 `json:"count"`
	// Memory is set for a memory request, e.g. "80GB+" (Name is then
	// empty); Manufacturer optionally narrows it, e.g. "nvidia".
	Memory       string `json:"memory,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
}

// String is NAME:COUNT as written in a task file.
func (a Accelerator) String() string {
	name := a.Name
	if name == "" {
		name = a.Memory
		if a.Manufacturer != "" {
			name = a.Manufacturer + ":" + a.Memory
		}
	}
	return name + ":" + strconv.FormatFloat(a.Count, 'f', -1, 64)
}

// AcceleratorArgs is `accelerator_args` (TPU settings).
type AcceleratorArgs struct {
	RuntimeVersion    string `json:"runtime_version,omitempty"`
	TPUName           string `json:"tpu_name,omitempty"`
	TPUVM             *bool  `json:"tpu_vm,omitempty"`
	GCPQueuedResource *bool  `json:"gcp_queued_resource,omitempty"`
}

// JobRecovery is a managed job's recovery policy.
type JobRecovery struct {
	// Strategy is upper case: EAGER_NEXT_REGION, FAILOVER, NONE (no
	// recovery), or "" for the default (EAGER_NEXT_REGION).
	Strategy            string `json:"strategy,omitempty"`
	MaxRestartsOnErrors int    `json:"max_restarts_on_errors,omitempty"`
	RecoverOnExitCodes  []int  `json:"recover_on_exit_codes,omitempty"`
}

// Autostop is `resources.autostop`.
type Autostop struct {
	Enabled     bool `json:"enabled"`
	IdleMinutes int  `json:"idle_minutes"`
	Down        bool `json:"down,omitempty"`
	// WaitFor is jobs_and_ssh, jobs or none ("" = the default,
	// jobs_and_ssh).
	WaitFor     string `json:"wait_for,omitempty"`
	Hook        string `json:"hook,omitempty"`
	HookTimeout int    `json:"hook_timeout,omitempty"`
}

// DiskVolume is an entry of `resources.volumes` (a disk attached to each
// node).
type DiskVolume struct {
	Path        string `json:"path"`
	Name        string `json:"name,omitempty"`
	DiskSize    int    `json:"disk_size,omitempty"` // GB
	DiskTier    string `json:"disk_tier,omitempty"`
	StorageType string `json:"storage_type"` // network or instance
	AttachMode  string `json:"attach_mode"`  // read_write or read_only
	AutoDelete  bool   `json:"auto_delete,omitempty"`
}

// DockerImage returns IMAGE when the image is `docker:IMAGE`.
func (r *Resources) DockerImage() string {
	const p = "docker:"
	if len(r.ImageID) > len(p) && r.ImageID[:len(p)] == p {
		return r.ImageID[len(p):]
	}
	return ""
}

// Candidates returns the concrete resource requests the optimizer weighs:
// the any_of or ordered candidates, each expanded once per acceptable
// accelerator, or the resources themselves. ordered reports whether the
// list must be tried in order (ordered, or a list of accelerators).
func (r *Resources) Candidates() (list []Resources, ordered bool) {
	base := []Resources{*r}
	switch {
	case len(r.Ordered) > 0:
		base, ordered = r.Ordered, true
	case len(r.AnyOf) > 0:
		base = r.AnyOf
	}
	for _, c := range base {
		c.AnyOf, c.Ordered = nil, nil
		if len(c.AcceleratorChoices) < 2 {
			list = append(list, c)
			continue
		}
		if len(base) == 1 && c.AcceleratorsOrdered {
			ordered = true
		}
		for _, a := range c.AcceleratorChoices {
			x := c
			acc := a
			x.Accelerators = &acc
			x.AcceleratorChoices = nil
			x.AcceleratorsOrdered = false
			list = append(list, x)
		}
	}
	return list, ordered
}
