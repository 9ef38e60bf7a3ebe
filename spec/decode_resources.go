package spec

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// candidateKeys are the fields of one resources candidate (the resources
// schema less any_of/ordered); resourceKeys adds those two.
var candidateKeys = []string{
	"infra", "cloud", "region", "zone", "cpus", "memory", "accelerators", "gpus",
	"instance_type", "use_spot", "job_recovery", "spot_recovery", "disk_size",
	"ephemeral_storage", "disk_tier", "network_tier", "local_disk",
	"max_hourly_cost", "ports", "labels", "accelerator_args", "image_id",
	"autostop", "priority", "priority_class", "volumes",
	"_docker_login_config", "_is_image_managed", "_requires_fuse",
	"_cluster_config_overrides", "_no_missing_accel_warnings",
}

var resourceKeys = append(append([]string{}, candidateKeys...), "any_of", "ordered")

// clouds are the cloud names `infra` and `cloud` accept (SkyPilot's
// ALL_CLOUDS, plus sky-coord's own local provider).
var clouds = []string{
	"aws", "azure", "gcp", "ibm", "lambda", "scp", "oci", "kubernetes", "runpod",
	"vast", "vsphere", "cudo", "fluidstack", "paperspace", "primeintellect", "do",
	"nebius", "ssh", "slurm", "hyperbolic", "seeweb", "shadeform", "yotta", "local",
}

// field is a resources field with where it was written.
type field struct {
	k, v *yaml.Node
	path string
}

// fieldSet is the fields of a resources mapping by name; candidates of
// any_of/ordered are the outer set overridden by the candidate's fields.
type fieldSet map[string]field

// collect reads a resources mapping into a fieldSet, reporting unknown
// keys and resolving the gpus alias.
func (d *decoder) collect(n *yaml.Node, path string, known []string) fieldSet {
	o, ok := d.object(n, path, known)
	if !ok {
		return nil
	}
	fs := fieldSet{}
	for _, p := range o.pairs {
		if _, ok := o.byKey[p.key]; !ok || d.isNull(p.v) && p.key != "image_id" && p.key != "ports" {
			continue
		}
		fs[p.key] = field{k: d.deref(p.k), v: p.v, path: child(path, p.key)}
	}
	if g, ok := fs["gpus"]; ok {
		if _, both := fs["accelerators"]; both {
			d.errorf(g.k, g.path, "gpus is another name for accelerators; set only one of them")
		} else {
			fs["accelerators"] = g
		}
		delete(fs, "gpus")
	}
	if j, ok := fs["spot_recovery"]; ok {
		if _, both := fs["job_recovery"]; both {
			d.errorf(j.k, j.path, "spot_recovery is the old name of job_recovery; set only job_recovery")
		} else {
			fs["job_recovery"] = j
		}
		delete(fs, "spot_recovery")
	}
	return fs
}

// resources reads a task's `resources`.
func (d *decoder) resources(n *yaml.Node, path string) Resources {
	outer := d.collect(n, path, resourceKeys)
	if outer == nil {
		return Resources{DiskSize: DefaultDiskSizeGB}
	}
	anyOf, hasAnyOf := outer["any_of"]
	ordered, hasOrdered := outer["ordered"]
	delete(outer, "any_of")
	delete(outer, "ordered")
	if hasAnyOf && hasOrdered {
		d.errorf(ordered.k, path, "any_of and ordered cannot be used together; use any_of (the optimizer picks the cheapest) or ordered (tried in order)")
	}
	r := d.build(outer, nil)
	if len(r.AcceleratorChoices) > 1 {
		acc := outer["accelerators"]
		if hasOrdered {
			d.errorf(d.deref(acc.v), acc.path, "ordered cannot be combined with several accelerators; list each accelerator as an ordered candidate instead")
		}
		if hasAnyOf && r.AcceleratorsOrdered {
			d.errorf(d.deref(acc.v), acc.path, "a list of accelerators (an order of preference) cannot be combined with any_of; use a mapping {A: 1, B: 1} or move them into the any_of candidates")
		}
	}
	for _, group := range []struct {
		f    field
		has  bool
		dest *[]Resources
	}{{anyOf, hasAnyOf, &r.AnyOf}, {ordered, hasOrdered, &r.Ordered}} {
		if !group.has {
			continue
		}
		items, ok := d.seq(group.f.v, group.f.path)
		if !ok {
			continue
		}
		for i, it := range items {
			cfs := d.collect(it, index(group.f.path, i), candidateKeys)
			if cfs == nil {
				continue
			}
			merged := fieldSet{}
			for k, v := range outer {
				merged[k] = v
			}
			var baseLabels *field
			if l, ok := outer["labels"]; ok {
				baseLabels = &l
			}
			for k, v := range cfs {
				merged[k] = v
			}
			if _, ok := cfs["labels"]; !ok {
				baseLabels = nil
			}
			*group.dest = append(*group.dest, d.build(merged, baseLabels))
		}
	}
	d.checkPriorities(r)
	if r.Accelerators == nil {
		if cands, _ := r.Candidates(); len(cands) > 0 && cands[0].Accelerators != nil {
			acc := *cands[0].Accelerators
			r.Accelerators = &acc
		}
	}
	return r
}

// build decodes one set of resources fields. baseLabels, when set, are
// the outer labels a candidate's labels are merged over.
func (d *decoder) build(fs fieldSet, baseLabels *field) Resources {
	r := Resources{DiskSize: DefaultDiskSizeGB}
	get := func(k string) (field, bool) { f, ok := fs[k]; return f, ok }

	d.location(fs, &r)
	if f, ok := get("cpus"); ok {
		r.CPUs = d.cpus(f)
	}
	if f, ok := get("memory"); ok {
		r.Memory = d.memory(f)
	}
	if f, ok := get("accelerators"); ok {
		if choices, list, ok := d.accelerators(f.v, f.path); ok && len(choices) > 0 {
			first := choices[0]
			r.Accelerators = &first
			if len(choices) > 1 {
				r.AcceleratorChoices = choices
				r.AcceleratorsOrdered = list
			}
			d.checkTPU(f, &r, choices)
		}
	}
	if f, ok := get("accelerator_args"); ok {
		r.AcceleratorArgs = d.acceleratorArgs(f)
	}
	if f, ok := get("instance_type"); ok {
		r.InstanceType, _ = d.str(f.v, f.path)
	}
	if f, ok := get("use_spot"); ok {
		r.UseSpot, _ = d.boolean(f.v, f.path)
	}
	if f, ok := get("job_recovery"); ok {
		r.JobRecovery = d.jobRecovery(f)
	}
	if f, ok := get("disk_size"); ok {
		r.DiskSize = d.diskSize(f)
	} else if f, ok := get("ephemeral_storage"); ok {
		r.DiskSize = d.diskSize(f)
	}
	if f, ok := get("disk_tier"); ok {
		r.DiskTier = d.enum(f, []string{"low", "medium", "high", "ultra", "best", "none"})
	}
	if f, ok := get("network_tier"); ok {
		r.NetworkTier = d.enum(f, []string{"standard", "best"})
	}
	if f, ok := get("local_disk"); ok {
		r.LocalDisk, _ = d.str(f.v, f.path)
	}
	if f, ok := get("max_hourly_cost"); ok {
		if v, ok := d.number(f.v, f.path); ok {
			if v <= 0 {
				d.errorf(d.deref(f.v), f.path, "must be a positive number of dollars per hour")
			}
			r.MaxHourlyCost = v
		}
	}
	if f, ok := get("ports"); ok {
		r.Ports = d.ports(f)
	}
	if baseLabels != nil {
		r.Labels = d.labels(*baseLabels)
	}
	if f, ok := get("labels"); ok {
		for k, v := range d.labels(f) {
			if r.Labels == nil {
				r.Labels = map[string]string{}
			}
			r.Labels[k] = v
		}
	}
	if f, ok := get("image_id"); ok {
		d.imageID(f, &r)
		if r.Cloud == "kubernetes" {
			// On Kubernetes every image is a container image.
			r.ImageID = dockerPrefixed(r.ImageID)
			for k, v := range r.ImageIDByRegion {
				r.ImageIDByRegion[k] = dockerPrefixed(v)
			}
		}
	}
	if f, ok := get("autostop"); ok {
		r.Autostop = d.autostop(f)
	}
	if f, ok := get("priority"); ok {
		if v, ok := d.integer(f.v, f.path); ok {
			if v < -1000 || v > 1000 {
				d.errorf(d.deref(f.v), f.path, "must be between -1000 and 1000, got %d", v)
			}
			r.Priority = &v
		}
	}
	if f, ok := get("priority_class"); ok {
		r.PriorityClass, _ = d.str(f.v, f.path)
	}
	if f, ok := get("volumes"); ok {
		r.Volumes = d.diskVolumes(f)
	}
	for _, k := range []string{"_is_image_managed", "_requires_fuse", "_no_missing_accel_warnings"} {
		if f, ok := get(k); ok {
			d.boolean(f.v, f.path)
		}
	}
	for _, k := range []string{"_docker_login_config", "_cluster_config_overrides"} {
		if f, ok := get(k); ok {
			d.mapping(f.v, f.path)
		}
	}
	return r
}

// location reads infra, or the legacy cloud/region/zone.
func (d *decoder) location(fs fieldSet, r *Resources) {
	infra, hasInfra := fs["infra"]
	for _, k := range []string{"cloud", "region", "zone"} {
		f, ok := fs[k]
		if !ok {
			continue
		}
		if hasInfra {
			d.errorf(f.k, f.path, "infra and %s cannot be used together; write infra: cloud/region/zone only", k)
			continue
		}
		s, ok := d.str(f.v, f.path)
		if !ok {
			continue
		}
		switch k {
		case "cloud":
			r.Cloud = d.cloudName(f, s)
		case "region":
			r.Region = s
		case "zone":
			r.Zone = s
		}
	}
	if !hasInfra {
		return
	}
	s, ok := d.str(infra.v, infra.path)
	if !ok {
		return
	}
	bad := func(why string) {
		d.errorf(d.deref(infra.v), infra.path, "invalid infra %q: %s; write cloud, cloud/region or cloud/region/zone (\"*\" for any), e.g. aws/us-east-1 or k8s/CONTEXT", s, why)
	}
	v := strings.Trim(strings.TrimSpace(s), "/")
	parts := strings.Split(v, "/")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
		if parts[i] == "" {
			bad("empty part")
			return
		}
	}
	cloud := strings.ToLower(parts[0])
	switch cloud {
	case "k8s", "kubernetes":
		r.Cloud = "kubernetes"
		r.Region = strings.Join(parts[1:], "/")
		return
	case "*":
		cloud = ""
	default:
		if !contains(clouds, cloud) {
			msg := "unknown cloud " + quoteList([]string{parts[0]})
			if sug := suggest(cloud, clouds); sug != "" {
				msg += "; did you mean " + quoteList([]string{sug}) + "?"
			}
			bad(msg)
			return
		}
	}
	if len(parts) > 3 {
		bad("too many parts")
		return
	}
	r.Cloud = cloud
	if cloud == "ssh" && len(parts) > 1 {
		// ssh/POOL: the node pool name may contain slashes.
		r.Region = strings.Join(parts[1:], "/")
		return
	}
	if len(parts) > 1 && parts[1] != "*" {
		r.Region = parts[1]
	}
	if len(parts) > 2 && parts[2] != "*" {
		r.Zone = parts[2]
	}
}

func (d *decoder) cloudName(f field, s string) string {
	c := strings.ToLower(s)
	if c == "k8s" {
		return "kubernetes"
	}
	if !contains(clouds, c) {
		msg := "unknown cloud " + quoteList([]string{s})
		if sug := suggest(c, clouds); sug != "" {
			msg += "; did you mean " + quoteList([]string{sug}) + "?"
		} else {
			msg += "; known clouds: " + strings.Join(clouds, ", ")
		}
		d.errorf(d.deref(f.v), f.path, "%s", msg)
		return ""
	}
	return c
}

func dockerPrefixed(image string) string {
	if image == "" || strings.HasPrefix(image, "docker:") {
		return image
	}
	return "docker:" + image
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// enum reads a case-insensitive string from allowed and returns it as
// spelled in allowed.
func (d *decoder) enum(f field, allowed []string) string {
	s, ok := d.str(f.v, f.path)
	if !ok {
		return ""
	}
	for _, a := range allowed {
		if strings.EqualFold(a, s) {
			return a
		}
	}
	msg := "must be " + quoteList(allowed) + ", got " + quoteList([]string{s})
	if sug := suggest(s, allowed); sug != "" {
		msg += "; did you mean " + quoteList([]string{sug}) + "?"
	}
	d.errorf(d.deref(f.v), f.path, "%s", msg)
	return ""
}

// checkTPU: TPUs exist on GCP and Kubernetes (GKE) only; with no cloud
// set, the cloud is inferred as SkyPilot does.
func (d *decoder) checkTPU(f field, r *Resources, choices []Accelerator) {
	allTPU := true
	for _, a := range choices {
		if !isTPU(a) {
			allTPU = false
			continue
		}
		if r.Cloud != "" && r.Cloud != "gcp" && r.Cloud != "kubernetes" {
			d.errorf(d.deref(f.v), f.path, "%s is a TPU, which needs infra gcp or kubernetes, not %s", a.Name, r.Cloud)
		}
	}
	if allTPU && r.Cloud == "" {
		r.Cloud = "gcp"
		if gkeTPU(choices[0]) {
			r.Cloud = "kubernetes"
		}
	}
}

func (d *decoder) checkPriorities(r Resources) {
	var first *int
	for _, c := range append(append([]Resources{}, r.AnyOf...), r.Ordered...) {
		if c.Priority == nil {
			continue
		}
		if first != nil && *first != *c.Priority {
			d.errorf(nil, "resources", "every candidate must have the same priority (got %d and %d)", *first, *c.Priority)
			return
		}
		first = c.Priority
	}
}
