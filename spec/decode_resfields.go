package spec

import (
	"math"
	"strings"
)

// cpus reads "4", "4+" or a number; it must be positive.
func (d *decoder) cpus(f field) string {
	k, s := d.kindOf(f.v)
	switch k {
	case kInt, kFloat:
		v, _ := d.number(f.v, f.path)
		if v <= 0 {
			d.errorf(d.deref(f.v), f.path, "must be positive, got %s", s.str)
			return ""
		}
		return s.str
	case kStr:
		num := strings.TrimSuffix(s.str, "+")
		v, ok := parseFloat(num)
		if !ok {
			d.errorf(d.deref(f.v), f.path, "must be a number of vCPUs, \"N\" (exactly N) or \"N+\" (at least N), got %q", s.str)
			return ""
		}
		if v <= 0 {
			d.errorf(d.deref(f.v), f.path, "must be positive, got %q", s.str)
			return ""
		}
		return s.str
	}
	d.typeErr(f.v, f.path, "a number of vCPUs or a string like \"4+\"")
	return ""
}

// memory reads GB as a number, "N", "N+" or a size with a unit ("64GB",
// "1TB+"), normalized to GB: "64", "1024+".
func (d *decoder) memory(f field) string {
	k, s := d.kindOf(f.v)
	if k != kStr && k != kInt && k != kFloat {
		d.typeErr(f.v, f.path, "a size in GB or a string like \"32+\" or \"64GB\"")
		return ""
	}
	gb, suffix, err := parseSizeGB(s.str, true, true)
	if err != nil {
		d.errorf(d.deref(f.v), f.path, "must be a size in GB (\"32\"), at least a size (\"32+\"), or a size with a unit (KB, MB, GB, TB, PB, or KiB-style), got %q", s.str)
		return ""
	}
	if gb <= 0 {
		d.errorf(d.deref(f.v), f.path, "must be positive, got %q", s.str)
		return ""
	}
	return formatGB(gb) + suffix
}

// diskSize reads GB as an integer or a size string ("256GB", "1TB").
func (d *decoder) diskSize(f field) int {
	k, s := d.kindOf(f.v)
	var gb float64
	switch k {
	case kInt:
		v, ok := d.integer(f.v, f.path)
		if !ok {
			return DefaultDiskSizeGB
		}
		gb = float64(v)
	case kStr:
		if !reSize.MatchString(s.str) {
			d.errorf(d.deref(f.v), f.path, "must be an integer number of GB or a size like \"256GB\" or \"1TB\", got %q", s.str)
			return DefaultDiskSizeGB
		}
		gb, _, _ = parseSizeGB(s.str, false, false)
	default:
		d.typeErr(f.v, f.path, "an integer number of GB or a size like \"256GB\"")
		return DefaultDiskSizeGB
	}
	if gb != math.Trunc(gb) || gb <= 0 || gb > 1<<30 {
		d.errorf(d.deref(f.v), f.path, "must be a positive whole number of GB, got %s", s.str)
		return DefaultDiskSizeGB
	}
	return int(gb)
}

func (d *decoder) acceleratorArgs(f field) *AcceleratorArgs {
	o, ok := d.object(f.v, f.path, []string{"runtime_version", "tpu_name", "tpu_vm", "gcp_queued_resource"})
	if !ok {
		return nil
	}
	a := &AcceleratorArgs{}
	if n, ok := o.get("runtime_version"); ok {
		a.RuntimeVersion, _ = d.str(n, o.sub("runtime_version"))
	}
	if n, ok := o.get("tpu_name"); ok {
		a.TPUName, _ = d.str(n, o.sub("tpu_name"))
	}
	if n, ok := o.get("tpu_vm"); ok {
		if b, ok := d.boolean(n, o.sub("tpu_vm")); ok {
			a.TPUVM = &b
		}
	}
	if n, ok := o.get("gcp_queued_resource"); ok {
		if b, ok := d.boolean(n, o.sub("gcp_queued_resource")); ok {
			a.GCPQueuedResource = &b
		}
	}
	return a
}

var recoveryStrategies = []string{"EAGER_NEXT_REGION", "FAILOVER", "NONE"}

// jobRecovery reads a strategy name or {strategy, max_restarts_on_errors,
// recover_on_exit_codes}.
func (d *decoder) jobRecovery(f field) *JobRecovery {
	jr := &JobRecovery{}
	strategy := func(n field) {
		s, isNull, ok := d.strOrNull(n.v, n.path)
		if !ok || isNull {
			return
		}
		u := strings.ToUpper(s)
		if !contains(recoveryStrategies, u) {
			msg := "unknown recovery strategy " + quoteList([]string{s}) + "; use " + quoteList(recoveryStrategies)
			if sug := suggest(u, recoveryStrategies); sug != "" {
				msg = "unknown recovery strategy " + quoteList([]string{s}) + "; did you mean " + quoteList([]string{sug}) + "?"
			}
			d.errorf(d.deref(n.v), n.path, "%s", msg)
			return
		}
		jr.Strategy = u
	}
	k, _ := d.kindOf(f.v)
	if k != kMap {
		if k != kStr {
			d.typeErr(f.v, f.path, "a strategy name or a mapping {strategy, max_restarts_on_errors, recover_on_exit_codes}")
			return nil
		}
		strategy(f)
		return jr
	}
	o, ok := d.object(f.v, f.path, []string{"strategy", "max_restarts_on_errors", "recover_on_exit_codes"})
	if !ok {
		return nil
	}
	if n, ok := o.raw("strategy"); ok {
		strategy(field{v: n, path: o.sub("strategy")})
	}
	if n, ok := o.get("max_restarts_on_errors"); ok {
		if v, ok := d.integer(n, o.sub("max_restarts_on_errors")); ok {
			if v < 0 {
				d.errorf(d.deref(n), o.sub("max_restarts_on_errors"), "must not be negative")
			}
			jr.MaxRestartsOnErrors = v
		}
	}
	if n, ok := o.get("recover_on_exit_codes"); ok {
		path := o.sub("recover_on_exit_codes")
		items := []field{{v: n, path: path}}
		if k, _ := d.kindOf(n); k == kSeq {
			seq, _ := d.seq(n, path)
			items = items[:0]
			for i, it := range seq {
				items = append(items, field{v: it, path: index(path, i)})
			}
		}
		seen := map[int]bool{}
		for _, it := range items {
			v, ok := d.integer(it.v, it.path)
			if !ok {
				continue
			}
			if v < 0 || v > 255 {
				d.errorf(d.deref(it.v), it.path, "an exit code must be between 0 and 255, got %d", v)
				continue
			}
			if seen[v] {
				d.errorf(d.deref(it.v), it.path, "exit code %d is listed twice", v)
				continue
			}
			seen[v] = true
			jr.RecoverOnExitCodes = append(jr.RecoverOnExitCodes, v)
		}
	}
	return jr
}

// ports reads a port, "N", "A-B", or a list of them.
func (d *decoder) ports(f field) []string {
	k, _ := d.kindOf(f.v)
	items := []field{f}
	switch k {
	case kNull:
		return nil
	case kSeq:
		seq, _ := d.seq(f.v, f.path)
		items = items[:0]
		for i, it := range seq {
			items = append(items, field{v: it, path: index(f.path, i)})
		}
	}
	var rs []portRange
	for _, it := range items {
		ik, s := d.kindOf(it.v)
		if ik != kInt && ik != kStr {
			d.typeErr(it.v, it.path, "a port number or a string like \"8080\" or \"10000-10010\"")
			continue
		}
		r, err := parsePort(s.str)
		if err != nil {
			d.errorf(d.deref(it.v), it.path, "%v", err)
			continue
		}
		rs = append(rs, r)
	}
	return simplifyPorts(rs)
}

// labels reads a mapping of strings.
func (d *decoder) labels(f field) map[string]string {
	ps, ok := d.mapping(f.v, f.path)
	if !ok {
		return nil
	}
	out := map[string]string{}
	for _, p := range ps {
		if s, ok := d.str(p.v, child(f.path, p.key)); ok {
			out[p.key] = s
		}
	}
	return out
}

// imageID reads an image for every region, a per-region mapping, or null.
func (d *decoder) imageID(f field, r *Resources) {
	k, s := d.kindOf(f.v)
	switch k {
	case kNull:
		return
	case kStr:
		r.ImageID = strings.TrimSpace(s.str)
		if r.ImageID == "" {
			d.errorf(d.deref(f.v), f.path, "must not be empty")
		}
		return
	case kMap:
		ps, _ := d.mapping(f.v, f.path)
		for _, p := range ps {
			v, ok := d.str(p.v, child(f.path, p.key))
			if !ok {
				continue
			}
			if kk, _ := d.kindOf(p.k); kk == kNull {
				// {null: IMAGE} is the image for every region.
				r.ImageID = strings.TrimSpace(v)
				continue
			}
			if r.ImageIDByRegion == nil {
				r.ImageIDByRegion = map[string]string{}
			}
			r.ImageIDByRegion[strings.TrimSpace(p.key)] = strings.TrimSpace(v)
		}
		return
	}
	d.typeErr(f.v, f.path, "an image ID (e.g. \"docker:ubuntu:22.04\"), a mapping {REGION: IMAGE_ID} or null")
}

var waitForModes = []string{"jobs_and_ssh", "jobs", "none"}

// autostop reads false/true, minutes ("10", "2h"), or {idle_minutes,
// down, wait_for, hook, hook_timeout}.
func (d *decoder) autostop(f field) *Autostop {
	k, s := d.kindOf(f.v)
	switch k {
	case kBool:
		return &Autostop{Enabled: s.b}
	case kInt:
		v, ok := d.integer(f.v, f.path)
		if ok && v < 0 {
			d.errorf(d.deref(f.v), f.path, "must not be negative; use false to disable autostop")
		}
		return &Autostop{Enabled: true, IdleMinutes: v}
	case kStr:
		v, ok := parseMinutes(s.str)
		if !ok {
			d.errorf(d.deref(f.v), f.path, "must be true/false, idle minutes (10) or a duration like \"30m\", \"2h\", \"1d\", got %q", s.str)
			return nil
		}
		return &Autostop{Enabled: true, IdleMinutes: v}
	case kMap:
	default:
		d.typeErr(f.v, f.path, "true/false, idle minutes, or a mapping {idle_minutes, down, wait_for}")
		return nil
	}
	o, ok := d.object(f.v, f.path, []string{"idle_minutes", "down", "wait_for", "hook", "hook_timeout"})
	if !ok {
		return nil
	}
	a := &Autostop{Enabled: true}
	if n, ok := o.get("idle_minutes"); ok {
		if v, ok := d.integer(n, o.sub("idle_minutes")); ok {
			if v < 0 {
				d.errorf(d.deref(n), o.sub("idle_minutes"), "must not be negative")
			}
			a.IdleMinutes = v
		}
	}
	if n, ok := o.get("down"); ok {
		a.Down, _ = d.boolean(n, o.sub("down"))
	}
	if n, ok := o.get("wait_for"); ok {
		a.WaitFor = d.enum(field{v: n, path: o.sub("wait_for")}, waitForModes)
	}
	if n, ok := o.get("hook"); ok {
		a.Hook, _ = d.str(n, o.sub("hook"))
	}
	if n, ok := o.get("hook_timeout"); ok {
		if v, ok := d.integer(n, o.sub("hook_timeout")); ok {
			if v < 1 {
				d.errorf(d.deref(n), o.sub("hook_timeout"), "must be at least 1 second")
			}
			a.HookTimeout = v
		}
	}
	return a
}

// diskVolumes reads `resources.volumes`.
func (d *decoder) diskVolumes(f field) []DiskVolume {
	items, ok := d.seq(f.v, f.path)
	if !ok {
		return nil
	}
	var out []DiskVolume
	for i, it := range items {
		if v, ok := d.diskVolume(it, index(f.path, i), ""); ok {
			out = append(out, v)
		}
	}
	return out
}
