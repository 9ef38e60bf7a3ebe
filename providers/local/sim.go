package local

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sky-coord/sky-coord/catalog"
	"github.com/sky-coord/sky-coord/providers"
)

// DefaultRegion is the one region of a local provider without local.yaml.
const DefaultRegion = "local"

// Sim is $SKY_COORD_HOME/local.yaml: simulated regions and zones, so
// failover can be rehearsed without a cloud.
//
//	regions:
//	  local-a:
//	    price: 1.0                  # per node-hour, used by the optimizer
//	    zones:
//	      local-a-1: {capacity: 0}  # no capacity: fails as a cloud would
//	      local-a-2: {fail: quota}  # fail: capacity | quota | credentials
type Sim struct {
	Regions map[string]SimRegion `yaml:"regions"`
}

// SimRegion is one simulated region.
type SimRegion struct {
	Price float64            `yaml:"price"`
	Zones map[string]SimZone `yaml:"zones"`
}

// SimZone is one simulated zone. Capacity nil means unlimited.
type SimZone struct {
	Capacity *int   `yaml:"capacity"`
	Fail     string `yaml:"fail"`
}

// place is one (region, zone) the provider offers.
type place struct {
	region, zone string
	price        float64
	zoneCfg      SimZone
}

// loadSim reads local.yaml; no file means one unlimited region.
func (p *Provider) loadSim() ([]place, error) {
	if p.ConfigPath == "" {
		return []place{{region: DefaultRegion}}, nil
	}
	data, err := os.ReadFile(p.ConfigPath)
	if errors.Is(err, fs.ErrNotExist) {
		return []place{{region: DefaultRegion}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p.ConfigPath, err)
	}
	var sim Sim
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&sim); err != nil {
		return nil, fmt.Errorf("%s: %v; see `sky-coord launch --help` for its format", p.ConfigPath, err)
	}
	if len(sim.Regions) == 0 {
		return nil, fmt.Errorf("%s: no regions; list at least one under `regions:`", p.ConfigPath)
	}
	var out []place
	for rname, r := range sim.Regions {
		if r.Price < 0 {
			return nil, fmt.Errorf("%s: regions.%s.price: %g is negative", p.ConfigPath, rname, r.Price)
		}
		if len(r.Zones) == 0 {
			out = append(out, place{region: rname, price: r.Price})
			continue
		}
		for zname, z := range r.Zones {
			switch z.Fail {
			case "", "capacity", "quota", "credentials":
			default:
				return nil, fmt.Errorf("%s: regions.%s.zones.%s.fail: %q is not one of capacity, quota, credentials", p.ConfigPath, rname, zname, z.Fail)
			}
			if z.Capacity != nil && *z.Capacity < 0 {
				return nil, fmt.Errorf("%s: regions.%s.zones.%s.capacity: %d is negative", p.ConfigPath, rname, zname, *z.Capacity)
			}
			out = append(out, place{region: rname, zone: zname, price: r.Price, zoneCfg: z})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].region != out[j].region {
			return out[i].region < out[j].region
		}
		return out[i].zone < out[j].zone
	})
	return out, nil
}

// Offers lists what the local machine offers in each simulated zone: all
// of its CPUs, memory and GPUs per node (catalog.Offer.Elastic).
func (p *Provider) Offers() ([]catalog.Offer, error) {
	places, err := p.loadSim()
	if err != nil {
		return nil, err
	}
	m := machine()
	out := make([]catalog.Offer, 0, len(places))
	for _, pl := range places {
		out = append(out, catalog.Offer{Cloud: Name, Region: pl.region, Zone: pl.zone, InstanceType: "local",
			Accelerator: m.gpuName, AccCount: float64(m.gpus), GPUMemoryMiB: m.gpuMemMiB,
			VCPUs: float64(m.cpus), MemoryGiB: m.memGiB, Price: pl.price, SpotPrice: pl.price,
			Arch: runtime.GOARCH, Elastic: true})
	}
	return out, nil
}

// placeFor finds the zone a launch asks for, checks the simulated failure
// and capacity, and returns it.
func (p *Provider) placeFor(req providers.LaunchRequest, existing int) (place, error) {
	places, err := p.loadSim()
	if err != nil {
		return place{}, err
	}
	var pl *place
	for i := range places {
		c := places[i]
		if (req.Region == "" || c.region == req.Region) && (req.Zone == "" || c.zone == req.Zone) {
			pl = &places[i]
			break
		}
	}
	where := req.Region
	if req.Zone != "" {
		where += "/" + req.Zone
	}
	if pl == nil {
		return place{}, fmt.Errorf("local has no region/zone %q (see %s): %w", where, p.ConfigPath, providers.ErrInvalidRequest)
	}
	loc := pl.region
	if pl.zone != "" {
		loc = pl.zone
	}
	switch pl.zoneCfg.Fail {
	case "capacity":
		return place{}, fmt.Errorf("%s: insufficient capacity (simulated by local.yaml): %w", loc, providers.ErrNoCapacity)
	case "quota":
		return place{}, fmt.Errorf("%s: quota exceeded for %d node(s) in region %s (simulated by local.yaml): %w", loc, req.NumNodes, pl.region, providers.ErrQuota)
	case "credentials":
		return place{}, fmt.Errorf("%s: credentials rejected (simulated by local.yaml): %w", loc, providers.ErrCredentials)
	}
	if c := pl.zoneCfg.Capacity; c != nil {
		used, err := p.nodesIn(pl.region, pl.zone, req.Cluster)
		if err != nil {
			return place{}, err
		}
		if need := req.NumNodes - existing; used+need > *c {
			return place{}, fmt.Errorf("%s: insufficient capacity: %d of %d node(s) in use, %d more asked (simulated by local.yaml): %w",
				loc, used, *c, need, providers.ErrNoCapacity)
		}
	}
	return *pl, nil
}

// nodesIn counts the nodes of other clusters in a zone.
func (p *Provider) nodesIn(region, zone, except string) (int, error) {
	entries, err := os.ReadDir(filepath.Join(p.Root, "clusters"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() || e.Name() == except {
			continue
		}
		recs, err := p.records(e.Name())
		if err != nil {
			return 0, err
		}
		for _, r := range recs {
			if r.Region == region && r.Zone == zone {
				n++
			}
		}
	}
	return n, nil
}

// machineInfo is what this machine gives each local node.
type machineInfo struct {
	cpus      int
	memGiB    float64
	gpus      int
	gpuName   string
	gpuMemMiB int
}

var machineCache struct {
	info machineInfo
	at   time.Time
}

func machine() machineInfo {
	if time.Since(machineCache.at) < time.Minute {
		return machineCache.info
	}
	m := machineInfo{cpus: runtime.NumCPU(), memGiB: memTotalGiB()}
	m.gpuName, m.gpus, m.gpuMemMiB = nvidiaGPUs()
	machineCache.info, machineCache.at = m, time.Now()
	return m
}

func memTotalGiB() float64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return float64(int(kb/1024/1024*10)) / 10
		}
	}
	return 0
}

// nvidiaGPUs asks nvidia-smi, when present, for this machine's GPUs.
func nvidiaGPUs() (name string, count, memMiB int) {
	path, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return "", 0, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits").Output()
	if err != nil {
		return "", 0, 0
	}
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(recs) == 0 {
		return "", 0, 0
	}
	for _, r := range recs {
		if len(r) < 2 {
			continue
		}
		count++
		if name == "" {
			name = GPUName(r[0])
			memMiB, _ = strconv.Atoi(strings.TrimSpace(r[1]))
		}
	}
	return name, count, memMiB
}

var gpuModelRe = regexp.MustCompile(`\b([A-Z]+[0-9]+[A-Z]?)\b`)

// GPUName maps nvidia-smi's product name to the catalog's accelerator
// name: "NVIDIA H200" → "H200", "NVIDIA A100-SXM4-80GB" → "A100-80GB",
// "Tesla V100-SXM2-16GB" → "V100".
func GPUName(product string) string {
	s := strings.TrimSpace(product)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "NVIDIA "), "Tesla ")
	s = strings.ReplaceAll(strings.TrimPrefix(s, "GeForce "), "RTX ", "RTX")
	m := gpuModelRe.FindStringSubmatch(strings.ReplaceAll(s, "-", " "))
	if m == nil {
		return strings.Fields(s + " GPU")[0]
	}
	name := m[1]
	if name == "A100" && strings.Contains(s, "80GB") {
		name = "A100-80GB"
	}
	return name
}
