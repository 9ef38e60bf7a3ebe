package spec

import (
	"encoding/json"
	"math"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// configKeys are the sections and keys a task's `config` may override
// (OVERRIDEABLE_CONFIG_KEYS_IN_TASK), plus the task-level `hooks`.
var configKeys = map[string][]string{
	"docker":           {"run_options"},
	"nvidia_gpus":      {"disable_ecc"},
	"ssh":              {"custom_metadata", "pod_config", "provision_timeout"},
	"kubernetes":       {"custom_metadata", "pod_config", "provision_timeout", "dws", "kueue", "remote_identity", "enable_docker"},
	"azure":            {"remote_identity", "vpc_name"},
	"gcp":              {"vpc_name", "subnet_names", "managed_instance_group", "enable_gvnic", "enable_gpu_direct", "placement_policy"},
	"vast":             {"datacenter_only", "create_instance_kwargs"},
	"slurm":            {"sbatch_options", "cpu_partition"},
	"active_workspace": nil,
	"hooks":            nil,
}

// configBools and configMaps are the keys whose type is checked.
var (
	configBools = []string{"disable_ecc", "enable_gvnic", "enable_gpu_direct", "datacenter_only"}
	configMaps  = []string{"pod_config", "custom_metadata"}
)

// config reads `config`, checking its keys, and returns it as JSON.
func (d *decoder) config(n *yaml.Node) json.RawMessage {
	o, ok := d.object(n, "config", sortedKeys(configKeys))
	if !ok {
		return nil
	}
	for _, p := range o.pairs {
		sub, known := configKeys[p.key]
		if !known {
			continue
		}
		path := o.sub(p.key)
		switch p.key {
		case "active_workspace":
			d.str(p.v, path)
			continue
		case "hooks":
			d.hooks(p.v, path)
			continue
		}
		so, ok := d.object(p.v, path, sub)
		if !ok {
			continue
		}
		for _, sp := range so.pairs {
			if _, ok := so.byKey[sp.key]; !ok || d.isNull(sp.v) {
				continue
			}
			switch {
			case contains(configBools, sp.key):
				d.boolean(sp.v, so.sub(sp.key))
			case contains(configMaps, sp.key):
				d.mapping(sp.v, so.sub(sp.key))
			case sp.key == "provision_timeout":
				d.integer(sp.v, so.sub(sp.key))
			case sp.key == "run_options":
				if k, _ := d.kindOf(sp.v); k == kSeq {
					items, _ := d.seq(sp.v, so.sub(sp.key))
					for i, it := range items {
						d.str(it, index(so.sub(sp.key), i))
					}
				} else {
					d.str(sp.v, so.sub(sp.key))
				}
			}
		}
	}
	return d.toJSON(n, "config")
}

var hookEvents = []string{"stop", "preemption", "down"}

// hooks reads config.hooks: [{run, events, timeout}].
func (d *decoder) hooks(n *yaml.Node, p string) {
	items, ok := d.seq(n, p)
	if !ok {
		return
	}
	for i, it := range items {
		ip := index(p, i)
		o, ok := d.object(it, ip, []string{"run", "events", "timeout"})
		if !ok {
			continue
		}
		if v, ok := o.get("run"); ok {
			if s, ok := d.str(v, o.sub("run")); ok && (s == "" || len(s) > 16*1024) {
				d.errorf(d.deref(v), o.sub("run"), "must be a script of 1 to 16384 bytes")
			}
		} else {
			d.errorf(o.node, ip, "a hook needs run (the script to run)")
		}
		if v, ok := o.get("events"); ok {
			if evs, ok := d.seq(v, o.sub("events")); ok {
				seen := map[string]bool{}
				for j, e := range evs {
					ev := d.enum(field{v: e, path: index(o.sub("events"), j)}, hookEvents)
					if ev != "" && seen[ev] {
						d.errorf(d.deref(e), index(o.sub("events"), j), "%s is listed twice", ev)
					}
					seen[ev] = true
				}
				if len(evs) == 0 {
					d.errorf(d.deref(v), o.sub("events"), "must list at least one of %s", quoteList(hookEvents))
				}
			}
		}
		if v, ok := o.get("timeout"); ok {
			if t, ok := d.integer(v, o.sub("timeout")); ok && t < 1 {
				d.errorf(d.deref(v), o.sub("timeout"), "must be at least 1 second")
			}
		}
	}
}

// volumes reads the task's `volumes`: {PATH: NAME} or {PATH: {name,
// sub_path}} for existing volumes, {PATH: {size, labels, ...}} for
// ephemeral ones.
func (d *decoder) volumes(n *yaml.Node) []VolumeMount {
	ps, ok := d.mapping(n, "volumes")
	if !ok {
		return nil
	}
	var out []VolumeMount
	for _, p := range ps {
		vp := child("volumes", p.key)
		if p.key == "" || uriScheme(p.key) != "" || (len(p.key) > 1 && strings.HasSuffix(p.key, "/")) {
			d.errorf(d.deref(p.k), "volumes", "invalid mount path %q: write a path on the nodes without a trailing /", p.key)
			continue
		}
		vm := VolumeMount{Path: p.key}
		if k, s := d.kindOf(p.v); k == kStr {
			vm.Name = s.str
			out = append(out, vm)
			continue
		}
		o, ok := d.object(p.v, vp, []string{"name", "sub_path", "size", "labels", "type", "infra", "use_existing", "config"})
		if !ok {
			continue
		}
		if v, ok := o.get("name"); ok {
			vm.Name, _ = d.str(v, o.sub("name"))
		}
		if v, ok := o.get("sub_path"); ok {
			if s, ok := d.str(v, o.sub("sub_path")); ok {
				if strings.HasPrefix(s, "/") || strings.Contains("/"+s+"/", "/../") {
					d.errorf(d.deref(v), o.sub("sub_path"), "must be a relative path inside the volume, without ..")
				}
				vm.SubPath = s
			}
		}
		if v, ok := o.get("size"); ok {
			if s, ok := d.pyStr(v, o.sub("size"), "a size like \"10Gi\""); ok {
				if !reSize.MatchString(s) {
					d.errorf(d.deref(v), o.sub("size"), "must be a size like \"100\" (GB), \"10Gi\" or \"1TB\", got %q", s)
				}
				vm.Size = s
			}
		}
		if v, ok := o.get("labels"); ok {
			vm.Labels = d.labels(field{v: v, path: o.sub("labels")})
		}
		rest := map[string]json.RawMessage{}
		for _, k := range []string{"type", "infra", "use_existing", "config"} {
			if v, ok := o.get(k); ok {
				rest[k] = d.toJSON(v, o.sub(k))
			}
		}
		if len(rest) > 0 {
			vm.Config, _ = json.Marshal(rest)
		}
		if vm.Name == "" && vm.Size == "" {
			d.errorf(o.node, vp, "a volume needs a name (an existing volume) or a size (a new ephemeral volume)")
		}
		out = append(out, vm)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// toJSON converts a node to compact JSON (mapping keys sorted).
func (d *decoder) toJSON(n *yaml.Node, p string) json.RawMessage {
	v := d.toValue(n, p, 0)
	b, err := json.Marshal(v)
	if err != nil {
		d.errorf(d.deref(n), p, "cannot be represented as JSON: %v", err)
		return nil
	}
	return b
}

func (d *decoder) toValue(n *yaml.Node, p string, depth int) any {
	if d.exhausted {
		return nil
	}
	if depth > maxDepth {
		d.errorf(d.deref(n), p, "nested deeper than %d levels", maxDepth)
		return nil
	}
	k, s := d.kindOf(n)
	switch k {
	case kNull:
		return nil
	case kBool:
		return s.b
	case kInt:
		return json.Number(s.i.String())
	case kFloat:
		if math.IsInf(s.f, 0) || math.IsNaN(s.f) {
			d.errorf(d.deref(n), p, "%s cannot be represented as JSON", s.str)
			return nil
		}
		return s.f
	case kStr, kTime:
		return s.str
	case kSeq:
		items, _ := d.seq(n, p)
		out := make([]any, 0, len(items))
		for i, it := range items {
			out = append(out, d.toValue(it, index(p, i), depth+1))
		}
		return out
	case kMap:
		ps, _ := d.mapping(n, p)
		out := make(map[string]any, len(ps))
		for _, pr := range ps {
			out[pr.key] = d.toValue(pr.v, child(p, pr.key), depth+1)
		}
		return out
	}
	d.errorf(d.deref(n), p, "unsupported value %s", d.describe(n))
	return nil
}
