package spec

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

var serviceKeys = []string{
	"readiness_probe", "replica_policy", "replicas", "workers", "ports",
	"load_balancing_policy", "tls", "pool", "load_balancer",
}

var lbPolicies = []string{"round_robin", "least_load", "instance_aware_least_load"}

var reQPSAccelerator = regexp.MustCompile(`^[A-Z0-9]+(?::[0-9]+)?$`)

// service reads `service`.
func (d *decoder) service(n *yaml.Node) *Service {
	o, ok := d.object(n, "service", serviceKeys)
	if !ok {
		return nil
	}
	s := &Service{
		ReadinessProbe: ReadinessProbe{Path: "/", InitialDelaySeconds: DefaultInitialDelaySeconds, TimeoutSeconds: DefaultReadinessTimeout},
		ReplicaPolicy:  ReplicaPolicy{MinReplicas: DefaultMinReplicas},
	}
	if v, ok := o.get("readiness_probe"); ok {
		d.readinessProbe(v, o.sub("readiness_probe"), &s.ReadinessProbe)
	}
	if o.has("replicas") && o.has("replica_policy") {
		d.errorf(o.keyNode("replicas"), "service", "replicas and replica_policy cannot be used together; replicas: N is short for replica_policy: {min_replicas: N}")
	}
	if v, ok := o.get("replicas"); ok {
		if r, ok := d.integer(v, o.sub("replicas")); ok {
			if r < 0 {
				d.errorf(d.deref(v), o.sub("replicas"), "must not be negative")
			}
			s.ReplicaPolicy.MinReplicas = r
		}
	} else if v, ok := o.get("replica_policy"); ok {
		d.replicaPolicy(v, o.sub("replica_policy"), &s.ReplicaPolicy, o.has("pool") || o.has("workers"))
	}
	if v, ok := o.get("workers"); ok {
		if w, ok := d.integer(v, o.sub("workers")); ok {
			s.Workers = &w
		}
	}
	if v, ok := o.get("ports"); ok {
		if p, ok := d.integer(v, o.sub("ports")); ok {
			if p < 1 || p > 65535 {
				d.errorf(d.deref(v), o.sub("ports"), "must be a port between 1 and 65535, got %d", p)
			}
			s.Ports = p
		}
	}
	if v, ok := o.get("load_balancing_policy"); ok {
		s.LoadBalancingPolicy = d.enum(field{v: v, path: o.sub("load_balancing_policy")}, lbPolicies)
	}
	if v, ok := o.get("tls"); ok {
		if to, ok := d.object(v, o.sub("tls"), []string{"keyfile", "certfile"}); ok {
			s.TLS = &TLS{}
			for _, k := range []string{"keyfile", "certfile"} {
				x, ok := to.get(k)
				if !ok {
					d.errorf(to.node, to.path, "tls needs both keyfile and certfile; %s is missing", k)
					continue
				}
				str, _ := d.str(x, to.sub(k))
				if k == "keyfile" {
					s.TLS.Keyfile = str
				} else {
					s.TLS.Certfile = str
				}
			}
		}
	}
	if v, ok := o.get("pool"); ok {
		s.Pool = d.pool(v, o.sub("pool"))
	}
	if v, ok := o.get("load_balancer"); ok {
		if lo, ok := d.object(v, o.sub("load_balancer"), []string{"stream_timeout_seconds"}); ok {
			if x, ok := lo.get("stream_timeout_seconds"); ok {
				if f, ok := d.number(x, lo.sub("stream_timeout_seconds")); ok {
					s.LBStreamTimeoutSeconds = &f
				}
			}
		}
	}
	return s
}

func (d *decoder) readinessProbe(n *yaml.Node, p string, rp *ReadinessProbe) {
	k, s := d.kindOf(n)
	if k == kStr {
		rp.Path = s.str
		d.checkProbePath(n, p, rp.Path)
		return
	}
	o, ok := d.object(n, p, []string{"path", "initial_delay_seconds", "timeout_seconds", "endpoint_probe_interval_seconds", "consecutive_failure_threshold_timeout", "post_data", "headers"})
	if !ok {
		return
	}
	if v, ok := o.get("path"); ok {
		if s, ok := d.str(v, o.sub("path")); ok {
			rp.Path = s
			d.checkProbePath(v, o.sub("path"), s)
		}
	} else {
		d.errorf(o.node, p, "readiness_probe needs a path, e.g. path: /health")
	}
	nums := []struct {
		key string
		dst *float64
	}{{"initial_delay_seconds", &rp.InitialDelaySeconds}, {"timeout_seconds", &rp.TimeoutSeconds}}
	for _, x := range nums {
		if v, ok := o.get(x.key); ok {
			if f, ok := d.number(v, o.sub(x.key)); ok {
				*x.dst = f
			}
		}
	}
	for _, key := range []string{"endpoint_probe_interval_seconds", "consecutive_failure_threshold_timeout"} {
		if v, ok := o.get(key); ok {
			if f, ok := d.number(v, o.sub(key)); ok {
				if key == "endpoint_probe_interval_seconds" {
					rp.EndpointProbeIntervalSeconds = &f
				} else {
					rp.ConsecutiveFailureThresholdTimeout = &f
				}
			}
		}
	}
	if v, ok := o.get("post_data"); ok {
		pp := o.sub("post_data")
		switch k, s := d.kindOf(v); k {
		case kStr:
			if !json.Valid([]byte(s.str)) {
				d.errorf(d.deref(v), pp, "a post_data string must be valid JSON (or write post_data as a mapping)")
			} else {
				var x any
				_ = json.Unmarshal([]byte(s.str), &x)
				rp.PostData, _ = json.Marshal(x)
			}
		case kMap:
			rp.PostData = d.toJSON(v, pp)
		default:
			d.typeErr(v, pp, "a JSON string or a mapping")
		}
	}
	if v, ok := o.get("headers"); ok {
		rp.Headers = d.labels(field{v: v, path: o.sub("headers")})
	}
}

func (d *decoder) checkProbePath(n *yaml.Node, p, path string) {
	if !strings.HasPrefix(path, "/") {
		d.errorf(d.deref(n), p, "the readiness path must start with /, got %q", path)
	}
}

func (d *decoder) replicaPolicy(n *yaml.Node, p string, rp *ReplicaPolicy, pool bool) {
	o, ok := d.object(n, p, []string{
		"min_replicas", "max_replicas", "num_overprovision", "target_qps_per_replica",
		"target_concurrency_per_replica",
		"dynamic_ondemand_fallback", "base_ondemand_fallback_replicas", "spot_placer",
		"upscale_delay_seconds", "downscale_delay_seconds",
	})
	if !ok {
		return
	}
	nonNeg := func(key string) *int {
		v, ok := o.get(key)
		if !ok {
			return nil
		}
		x, ok := d.integer(v, o.sub(key))
		if !ok {
			return nil
		}
		if x < 0 {
			d.errorf(d.deref(v), o.sub(key), "must not be negative")
		}
		return &x
	}
	if m := nonNeg("min_replicas"); m != nil {
		rp.MinReplicas = *m
	} else if !o.has("min_replicas") {
		d.errorf(o.node, p, "replica_policy needs min_replicas")
	}
	rp.MaxReplicas = nonNeg("max_replicas")
	rp.NumOverprovision = nonNeg("num_overprovision")
	rp.BaseOndemandFallbackReplicas = nonNeg("base_ondemand_fallback_replicas")
	if v, ok := o.get("target_qps_per_replica"); ok {
		qp := o.sub("target_qps_per_replica")
		if k, _ := d.kindOf(v); k == kMap {
			ps, _ := d.mapping(v, qp)
			rp.TargetQPSPerAccelerator = map[string]float64{}
			for _, pr := range ps {
				if !reQPSAccelerator.MatchString(pr.key) {
					d.errorf(d.deref(pr.k), qp, "%q must be an accelerator like \"H100\" or \"H100:1\" (upper case)", pr.key)
					continue
				}
				if f, ok := d.number(pr.v, child(qp, pr.key)); ok {
					if f < 0 {
						d.errorf(d.deref(pr.v), child(qp, pr.key), "must not be negative")
					}
					rp.TargetQPSPerAccelerator[pr.key] = f
				}
			}
		} else if f, ok := d.number(v, qp); ok {
			if f < 0 {
				d.errorf(d.deref(v), qp, "must not be negative")
			}
			rp.TargetQPSPerReplica = &f
		}
	}
	if v, ok := o.get("target_concurrency_per_replica"); ok {
		if f, ok := d.number(v, o.sub("target_concurrency_per_replica")); ok {
			if f < 0 {
				d.errorf(d.deref(v), o.sub("target_concurrency_per_replica"), "must not be negative")
			}
			rp.TargetConcurrencyPerReplica = &f
		}
	}
	if v, ok := o.get("dynamic_ondemand_fallback"); ok {
		if b, ok := d.boolean(v, o.sub("dynamic_ondemand_fallback")); ok {
			rp.DynamicOndemandFallback = &b
		}
	}
	if v, ok := o.get("spot_placer"); ok {
		rp.SpotPlacer = d.enum(field{v: v, path: o.sub("spot_placer")}, []string{"dynamic_fallback"})
	}
	for _, key := range []string{"upscale_delay_seconds", "downscale_delay_seconds"} {
		if v, ok := o.get(key); ok {
			if f, ok := d.number(v, o.sub(key)); ok {
				if key == "upscale_delay_seconds" {
					rp.UpscaleDelaySeconds = &f
				} else {
					rp.DownscaleDelaySeconds = &f
				}
			}
		}
	}
	target := ""
	switch {
	case rp.TargetQPSPerReplica != nil || rp.TargetQPSPerAccelerator != nil:
		target = "target_qps_per_replica"
	case rp.TargetConcurrencyPerReplica != nil:
		target = "target_concurrency_per_replica"
	}
	switch {
	case rp.MaxReplicas != nil && *rp.MaxReplicas < rp.MinReplicas:
		d.errorf(o.keyNode("max_replicas"), o.sub("max_replicas"), "must be at least min_replicas (%d), got %d", rp.MinReplicas, *rp.MaxReplicas)
	case target != "" && rp.MaxReplicas == nil:
		d.errorf(o.keyNode(target), o.sub(target), "autoscaling needs max_replicas; set replica_policy.max_replicas")
	case target == "" && !pool && rp.MaxReplicas != nil && *rp.MaxReplicas != rp.MinReplicas:
		// SkyPilot's own examples (llm/deepseek-r1) do this; the service
		// then stays at min_replicas. A warning, not an error.
		d.warnf(o.keyNode("max_replicas"), o.sub("max_replicas"), "min_replicas (%d) and max_replicas (%d) differ but no autoscaling target is set, so the service stays at %d replicas; set target_qps_per_replica to autoscale", rp.MinReplicas, *rp.MaxReplicas, rp.MinReplicas)
	}
}

// pool reads a pool: top-level `pool` or `service.pool`.
func (d *decoder) pool(n *yaml.Node, p string) *Pool {
	o, ok := d.object(n, p, []string{"workers", "min_workers", "max_workers", "queue_length_threshold", "upscale_delay_seconds", "downscale_delay_seconds"})
	if !ok {
		return nil
	}
	pl := &Pool{}
	ints := []struct {
		key string
		dst **int
		min int
	}{{"workers", &pl.Workers, 0}, {"min_workers", &pl.MinWorkers, 0}, {"max_workers", &pl.MaxWorkers, 0}, {"queue_length_threshold", &pl.QueueLengthThreshold, 1}}
	for _, x := range ints {
		if v, ok := o.get(x.key); ok {
			if i, ok := d.integer(v, o.sub(x.key)); ok {
				if i < x.min {
					d.errorf(d.deref(v), o.sub(x.key), "must be at least %d", x.min)
				}
				*x.dst = &i
			}
		}
	}
	for _, x := range []struct {
		key string
		dst **float64
	}{{"upscale_delay_seconds", &pl.UpscaleDelaySeconds}, {"downscale_delay_seconds", &pl.DownscaleDelaySeconds}} {
		if v, ok := o.get(x.key); ok {
			if f, ok := d.number(v, o.sub(x.key)); ok {
				if f < 0 {
					d.errorf(d.deref(v), o.sub(x.key), "must not be negative")
				}
				*x.dst = &f
			}
		}
	}
	if pl.MinWorkers != nil && pl.MaxWorkers != nil && *pl.MaxWorkers < *pl.MinWorkers {
		d.errorf(o.keyNode("max_workers"), o.sub("max_workers"), "must be at least min_workers (%d)", *pl.MinWorkers)
	}
	return pl
}

// ServicePort is the port a service's replicas serve on: service.ports,
// or else the one port every resources candidate opens. It is checked when
// a service is brought up, not when the file is parsed (SkyPilot accepts a
// service section it is not asked to serve).
func (t *Task) ServicePort() (int, error) {
	if t.Service == nil {
		return 0, fmt.Errorf("the task has no service section")
	}
	if t.Service.Ports > 0 {
		return t.Service.Ports, nil
	}
	cands, _ := t.Resources.Candidates()
	port := ""
	for _, c := range cands {
		if len(c.Ports) != 1 || countPorts(c.Ports) != 1 {
			return 0, fmt.Errorf("a service needs its replicas' port: open exactly one port in resources.ports (e.g. ports: 8080), or set service.ports to the main port when resources open several")
		}
		if port != "" && c.Ports[0] != port {
			return 0, fmt.Errorf("the resources candidates open different ports (%s and %s); a service needs the same port on every replica", port, c.Ports[0])
		}
		port = c.Ports[0]
	}
	p, _ := strconv.Atoi(port)
	return p, nil
}
