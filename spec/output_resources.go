package spec

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// infraString is cloud[/region[/zone]] with * for what is unset.
func infraString(r *Resources) string {
	parts := []string{r.Cloud, r.Region, r.Zone}
	for i := range parts {
		if parts[i] == "" {
			parts[i] = "*"
		}
	}
	if r.Cloud == "kubernetes" || r.Cloud == "ssh" {
		parts = parts[:2]
	}
	for len(parts) > 0 && parts[len(parts)-1] == "*" {
		parts = parts[:len(parts)-1]
	}
	return strings.Join(parts, "/")
}

// resourcesNode writes resources; parent is set for an any_of/ordered
// candidate, which writes what undoes a parent's value (use_spot: false,
// image_id: null, ports: null) since candidates inherit the parent's.
func resourcesNode(r *Resources, parent *Resources) *yaml.Node {
	top := parent == nil
	m := &ymap{}
	m.str("infra", infraString(r))
	m.str("instance_type", r.InstanceType)
	m.str("cpus", r.CPUs)
	m.str("memory", r.Memory)
	switch {
	case len(r.AcceleratorChoices) > 1 && r.AcceleratorsOrdered:
		var names []string
		for _, a := range r.AcceleratorChoices {
			names = append(names, a.String())
		}
		m.add("accelerators", strList(names))
	case len(r.AcceleratorChoices) > 1:
		acc := &ymap{}
		for _, a := range r.AcceleratorChoices {
			acc.add(a.String(), nullNode())
		}
		m.add("accelerators", acc.node())
	case r.Accelerators != nil && (top && len(r.AnyOf) == 0 && len(r.Ordered) == 0 || !top):
		m.str("accelerators", r.Accelerators.String())
	}
	if a := r.AcceleratorArgs; a != nil {
		x := &ymap{}
		x.str("runtime_version", a.RuntimeVersion)
		x.str("tpu_name", a.TPUName)
		if a.TPUVM != nil {
			x.add("tpu_vm", boolNode(*a.TPUVM))
		}
		if a.GCPQueuedResource != nil {
			x.add("gcp_queued_resource", boolNode(*a.GCPQueuedResource))
		}
		m.add("accelerator_args", x.node())
	}
	if r.UseSpot || (parent != nil && parent.UseSpot) {
		m.add("use_spot", boolNode(r.UseSpot))
	}
	if j := r.JobRecovery; j != nil {
		x := &ymap{}
		x.str("strategy", j.Strategy)
		if j.MaxRestartsOnErrors > 0 {
			x.add("max_restarts_on_errors", intNode(j.MaxRestartsOnErrors))
		}
		if len(j.RecoverOnExitCodes) > 0 {
			seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, c := range j.RecoverOnExitCodes {
				seq.Content = append(seq.Content, intNode(c))
			}
			x.add("recover_on_exit_codes", seq)
		}
		if n := x.node(); n != nil {
			m.add("job_recovery", n)
		} else {
			m.add("job_recovery", &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle})
		}
	}
	m.add("disk_size", intNode(r.DiskSize))
	m.str("disk_tier", r.DiskTier)
	m.str("network_tier", r.NetworkTier)
	m.str("local_disk", r.LocalDisk)
	if r.MaxHourlyCost > 0 {
		m.add("max_hourly_cost", floatNode(r.MaxHourlyCost))
	}
	if len(r.Ports) > 0 {
		m.add("ports", strList(r.Ports))
	} else if parent != nil && len(parent.Ports) > 0 {
		m.add("ports", nullNode())
	}
	m.add("labels", strMap(r.Labels, false))
	if len(r.ImageIDByRegion) > 0 {
		im := strMap(r.ImageIDByRegion, false)
		if r.ImageID != "" {
			// {null: IMAGE} is the image for the other regions.
			im.Content = append([]*yaml.Node{nullNode(), scalarNode(r.ImageID)}, im.Content...)
		}
		m.add("image_id", im)
	} else if r.ImageID != "" {
		m.str("image_id", r.ImageID)
	} else if parent != nil && (parent.ImageID != "" || len(parent.ImageIDByRegion) > 0) {
		m.add("image_id", nullNode())
	}
	if a := r.Autostop; a != nil {
		if !a.Enabled {
			m.add("autostop", boolNode(false))
		} else {
			x := &ymap{}
			x.add("idle_minutes", intNode(a.IdleMinutes))
			if a.Down {
				x.add("down", boolNode(true))
			}
			x.str("wait_for", a.WaitFor)
			x.str("hook", a.Hook)
			if a.HookTimeout > 0 {
				x.add("hook_timeout", intNode(a.HookTimeout))
			}
			m.add("autostop", x.node())
		}
	}
	if r.Priority != nil {
		m.add("priority", intNode(*r.Priority))
	}
	m.str("priority_class", r.PriorityClass)
	if len(r.Volumes) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, v := range r.Volumes {
			x := &ymap{}
			x.str("path", v.Path)
			x.str("name", v.Name)
			if v.DiskSize > 0 {
				x.add("disk_size", intNode(v.DiskSize))
			}
			x.str("disk_tier", v.DiskTier)
			x.str("storage_type", v.StorageType)
			x.str("attach_mode", v.AttachMode)
			if v.AutoDelete {
				x.add("auto_delete", boolNode(true))
			}
			seq.Content = append(seq.Content, x.node())
		}
		m.add("volumes", seq)
	}
	if top {
		for _, g := range []struct {
			key  string
			list []Resources
		}{{"any_of", r.AnyOf}, {"ordered", r.Ordered}} {
			if len(g.list) == 0 {
				continue
			}
			seq := &yaml.Node{Kind: yaml.SequenceNode}
			for i := range g.list {
				seq.Content = append(seq.Content, resourcesNode(&g.list[i], r))
			}
			m.add(g.key, seq)
		}
	}
	return m.node()
}

func serviceNode(s *Service) *yaml.Node {
	if s == nil {
		return nil
	}
	m := &ymap{}
	rp := &ymap{}
	rp.str("path", s.ReadinessProbe.Path)
	rp.add("initial_delay_seconds", floatNode(s.ReadinessProbe.InitialDelaySeconds))
	rp.add("timeout_seconds", floatNode(s.ReadinessProbe.TimeoutSeconds))
	if p := s.ReadinessProbe.EndpointProbeIntervalSeconds; p != nil {
		rp.add("endpoint_probe_interval_seconds", floatNode(*p))
	}
	if p := s.ReadinessProbe.ConsecutiveFailureThresholdTimeout; p != nil {
		rp.add("consecutive_failure_threshold_timeout", floatNode(*p))
	}
	rp.add("post_data", jsonNode(s.ReadinessProbe.PostData))
	rp.add("headers", strMap(s.ReadinessProbe.Headers, false))
	m.add("readiness_probe", rp.node())
	p := s.ReplicaPolicy
	pol := &ymap{}
	pol.add("min_replicas", intNode(p.MinReplicas))
	for _, x := range []struct {
		k string
		v *int
	}{{"max_replicas", p.MaxReplicas}, {"num_overprovision", p.NumOverprovision}, {"base_ondemand_fallback_replicas", p.BaseOndemandFallbackReplicas}} {
		if x.v != nil {
			pol.add(x.k, intNode(*x.v))
		}
	}
	if p.TargetQPSPerReplica != nil {
		pol.add("target_qps_per_replica", floatNode(*p.TargetQPSPerReplica))
	}
	if len(p.TargetQPSPerAccelerator) > 0 {
		q := &ymap{}
		for _, k := range sortedKeys(p.TargetQPSPerAccelerator) {
			q.add(k, floatNode(p.TargetQPSPerAccelerator[k]))
		}
		pol.add("target_qps_per_replica", q.node())
	}
	if p.TargetConcurrencyPerReplica != nil {
		pol.add("target_concurrency_per_replica", floatNode(*p.TargetConcurrencyPerReplica))
	}
	if p.DynamicOndemandFallback != nil {
		pol.add("dynamic_ondemand_fallback", boolNode(*p.DynamicOndemandFallback))
	}
	pol.str("spot_placer", p.SpotPlacer)
	for _, x := range []struct {
		k string
		v *float64
	}{{"upscale_delay_seconds", p.UpscaleDelaySeconds}, {"downscale_delay_seconds", p.DownscaleDelaySeconds}} {
		if x.v != nil {
			pol.add(x.k, floatNode(*x.v))
		}
	}
	m.add("replica_policy", pol.node())
	if s.Ports > 0 {
		m.add("ports", intNode(s.Ports))
	}
	m.str("load_balancing_policy", s.LoadBalancingPolicy)
	if s.TLS != nil {
		t := &ymap{}
		t.str("keyfile", s.TLS.Keyfile)
		t.str("certfile", s.TLS.Certfile)
		m.add("tls", t.node())
	}
	if s.Workers != nil {
		m.add("workers", intNode(*s.Workers))
	}
	m.add("pool", poolNode(s.Pool))
	if s.LBStreamTimeoutSeconds != nil {
		lb := &ymap{}
		lb.add("stream_timeout_seconds", floatNode(*s.LBStreamTimeoutSeconds))
		m.add("load_balancer", lb.node())
	}
	return m.node()
}

func poolNode(p *Pool) *yaml.Node {
	if p == nil {
		return nil
	}
	m := &ymap{}
	for _, x := range []struct {
		k string
		v *int
	}{{"workers", p.Workers}, {"min_workers", p.MinWorkers}, {"max_workers", p.MaxWorkers}, {"queue_length_threshold", p.QueueLengthThreshold}} {
		if x.v != nil {
			m.add(x.k, intNode(*x.v))
		}
	}
	for _, x := range []struct {
		k string
		v *float64
	}{{"upscale_delay_seconds", p.UpscaleDelaySeconds}, {"downscale_delay_seconds", p.DownscaleDelaySeconds}} {
		if x.v != nil {
			m.add(x.k, floatNode(*x.v))
		}
	}
	if n := m.node(); n != nil {
		return n
	}
	return &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
}
