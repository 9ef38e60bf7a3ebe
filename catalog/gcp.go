package catalog

import (
	"fmt"
	"strings"
)

// On GCP most GPUs are attached to a host VM priced separately; some GPUs
// come only with their own machine family. These tables follow GCP's
// rules (https://cloud.google.com/compute/docs/gpus) as SkyPilot applies
// them, so a plan here picks the machine SkyPilot would.

// gcpAccMachines: accelerator → count → the machine types that carry it.
var gcpAccMachines = map[string]map[int][]string{
	"A100":      {1: {"a2-highgpu-1g"}, 2: {"a2-highgpu-2g"}, 4: {"a2-highgpu-4g"}, 8: {"a2-highgpu-8g"}, 16: {"a2-megagpu-16g"}},
	"A100-80GB": {1: {"a2-ultragpu-1g"}, 2: {"a2-ultragpu-2g"}, 4: {"a2-ultragpu-4g"}, 8: {"a2-ultragpu-8g"}},
	"L4": {1: {"g2-standard-4", "g2-standard-8", "g2-standard-12", "g2-standard-16", "g2-standard-32"},
		2: {"g2-standard-24"}, 4: {"g2-standard-48"}, 8: {"g2-standard-96"}},
	"H100":      {1: {"a3-highgpu-1g"}, 2: {"a3-highgpu-2g"}, 4: {"a3-highgpu-4g"}, 8: {"a3-highgpu-8g"}},
	"H100-MEGA": {8: {"a3-megagpu-8g"}},
	"H200":      {8: {"a3-ultragpu-8g"}},
	"B200":      {8: {"a4-highgpu-8g"}},
}

// gcpHostCPUs: vCPUs of the default n1 host per GPU count.
var gcpHostCPUs = map[string]map[int]int{
	"K80":     {1: 4, 2: 8, 4: 16, 8: 32, 16: 64},
	"V100":    {1: 8, 2: 16, 4: 32, 8: 64},
	"T4":      {1: 4, 2: 8, 4: 48},
	"P100":    {1: 8, 2: 16, 4: 32, 8: 64},
	"DEFAULT": {1: 8, 2: 16, 4: 32, 8: 64, 16: 128},
}

var gcpHostFamilies = []string{"n1-standard-", "n1-highmem-", "n1-highcpu-"}

// gcpMachineAccelerator is the accelerator a GCP machine type carries.
func gcpMachineAccelerator(instanceType string) (string, int, bool) {
	for name, byCount := range gcpAccMachines {
		for n, types := range byCount {
			for _, t := range types {
				if t == instanceType {
					return name, n, true
				}
			}
		}
	}
	return "", 0, false
}

// gcpGPUPrice is the price of count accelerators in a zone.
func (c *Catalog) gcpGPUPrice(name string, count float64, zone string) (gpuRow, bool) {
	for _, g := range c.gcpGPU {
		if g.Zone == zone && strings.EqualFold(g.Name, name) && near(g.Count, count) {
			return g, true
		}
	}
	return gpuRow{}, false
}

// gcpOffers returns GCP's offers with accelerators: machines that carry
// their GPUs (priced with them) and n1 hosts with GPUs attached, one per
// zone, the cheapest host that meets cpus and memory (or SkyPilot's
// defaults for the GPU count when neither is given).
func (c *Catalog) gcpOffers(cpus, memory string) []Offer {
	var out []Offer
	// Machines that carry their accelerators.
	for _, o := range c.offers["gcp"] {
		name, n, ok := gcpMachineAccelerator(o.InstanceType)
		if !ok {
			continue
		}
		g, ok := c.gcpGPUPrice(name, float64(n), o.Zone)
		if !ok {
			continue
		}
		o.Accelerator, o.AccCount, o.GPUMemoryMiB = g.Name, g.Count, g.MemoryMiB
		o.Price += g.Price
		o.SpotPrice = addSpot(o.SpotPrice, g.SpotPrice)
		out = append(out, o)
	}
	// GPUs attached to an n1 host.
	for _, g := range c.gcpGPU {
		if _, own := gcpAccMachines[g.Name]; own {
			continue
		}
		hostCPUs, hostMem := cpus, memory
		if hostCPUs == "" && hostMem == "" {
			table, ok := gcpHostCPUs[g.Name]
			if !ok {
				table = gcpHostCPUs["DEFAULT"]
			}
			n, ok := table[int(g.Count)]
			if !ok {
				continue
			}
			hostCPUs = itoa(n) + "+"
		}
		if hostMem == "" {
			if v, _, ok := parseAmount(hostCPUs); ok {
				hostMem = itoa(int(v)*4) + "+"
			}
		}
		var best *Offer
		for i, o := range c.offers["gcp"] {
			if o.Zone != g.Zone || !hasAnyPrefix(o.InstanceType, gcpHostFamilies) {
				continue
			}
			if !amountFits(hostCPUs, o.VCPUs, false) || !memoryFits(hostMem, o, false) {
				continue
			}
			if best == nil || o.Price < best.Price {
				best = &c.offers["gcp"][i]
			}
		}
		if best == nil {
			continue
		}
		o := *best
		o.Accelerator, o.AccCount, o.GPUMemoryMiB = g.Name, g.Count, g.MemoryMiB
		o.Price += g.Price
		o.SpotPrice = addSpot(o.SpotPrice, g.SpotPrice)
		out = append(out, o)
	}
	return out
}

// addSpot adds two spot prices; 0 (no spot market) on either side is 0.
func addSpot(a, b float64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return a + b
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// gcpHostDefaults describes the n1 host SkyPilot picks for a GPU when the
// task sets neither cpus nor memory.
func gcpHostDefaults(name string, count float64) string {
	table, ok := gcpHostCPUs[name]
	if !ok {
		table = gcpHostCPUs["DEFAULT"]
	}
	n, ok := table[int(count)]
	if !ok {
		return "no default host for this count"
	}
	return fmt.Sprintf("cpus %d+, memory %d+ GB", n, 4*n)
}
