package spec

import "encoding/json"

// Service defaults (sky/serve/constants.py).
const (
	DefaultInitialDelaySeconds = 1200
	DefaultReadinessTimeout    = 15
	DefaultMinReplicas         = 1
)

// Service is a task's `service` section (SkyServe).
type Service struct {
	ReadinessProbe ReadinessProbe `json:"readiness_probe"`
	ReplicaPolicy  ReplicaPolicy  `json:"replica_policy"`
	// Ports is the replicas' main port (0: the task's single resources
	// port).
	Ports int `json:"ports,omitempty"`
	// LoadBalancingPolicy is round_robin, least_load or
	// instance_aware_least_load ("" = least_load).
	LoadBalancingPolicy string `json:"load_balancing_policy,omitempty"`
	TLS                 *TLS   `json:"tls,omitempty"`
	// Workers and Pool are set for a pool defined through `service`.
	Workers *int  `json:"workers,omitempty"`
	Pool    *Pool `json:"pool,omitempty"`
	// LBStreamTimeoutSeconds is load_balancer.stream_timeout_seconds.
	LBStreamTimeoutSeconds *float64 `json:"lb_stream_timeout_seconds,omitempty"`
}

// ReadinessProbe is how the load balancer decides a replica is ready.
type ReadinessProbe struct {
	Path                string  `json:"path"`
	InitialDelaySeconds float64 `json:"initial_delay_seconds"`
	TimeoutSeconds      float64 `json:"timeout_seconds"`
	// PostData, when set, makes the probe a POST of this JSON.
	PostData                           json.RawMessage   `json:"post_data,omitempty"`
	Headers                            map[string]string `json:"headers,omitempty"`
	EndpointProbeIntervalSeconds       *float64          `json:"endpoint_probe_interval_seconds,omitempty"`
	ConsecutiveFailureThresholdTimeout *float64          `json:"consecutive_failure_threshold_timeout,omitempty"`
}

// ReplicaPolicy is `replica_policy` (or the `replicas: N` shorthand).
type ReplicaPolicy struct {
	MinReplicas      int  `json:"min_replicas"`
	MaxReplicas      *int `json:"max_replicas,omitempty"`
	NumOverprovision *int `json:"num_overprovision,omitempty"`
	// TargetQPSPerReplica is the number form; TargetQPSPerAccelerator the
	// mapping form ({"H100:1": 10}).
	TargetQPSPerReplica          *float64           `json:"target_qps_per_replica,omitempty"`
	TargetQPSPerAccelerator      map[string]float64 `json:"target_qps_per_accelerator,omitempty"`
	TargetConcurrencyPerReplica  *float64           `json:"target_concurrency_per_replica,omitempty"`
	DynamicOndemandFallback      *bool              `json:"dynamic_ondemand_fallback,omitempty"`
	BaseOndemandFallbackReplicas *int               `json:"base_ondemand_fallback_replicas,omitempty"`
	SpotPlacer                   string             `json:"spot_placer,omitempty"`
	UpscaleDelaySeconds          *float64           `json:"upscale_delay_seconds,omitempty"`
	DownscaleDelaySeconds        *float64           `json:"downscale_delay_seconds,omitempty"`
}

// TLS is the load balancer's certificate.
type TLS struct {
	Keyfile  string `json:"keyfile"`
	Certfile string `json:"certfile"`
}

// Pool is a pool of workers (top-level `pool`, or `service.pool`).
type Pool struct {
	Workers               *int     `json:"workers,omitempty"`
	MinWorkers            *int     `json:"min_workers,omitempty"`
	MaxWorkers            *int     `json:"max_workers,omitempty"`
	QueueLengthThreshold  *int     `json:"queue_length_threshold,omitempty"`
	UpscaleDelaySeconds   *float64 `json:"upscale_delay_seconds,omitempty"`
	DownscaleDelaySeconds *float64 `json:"downscale_delay_seconds,omitempty"`
}
