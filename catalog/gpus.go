package catalog

import (
	"sort"
	"strings"
)

// CommonGPUs are listed first by `show-gpus`, as SkyPilot does.
var CommonGPUs = []string{"A10", "A10G", "A100", "A100-80GB", "B200", "H100", "H200", "L4", "L40S", "T4", "V100", "V100-32GB"}

// GPUOffer is one row of `show-gpus NAME`.
type GPUOffer struct {
	Accelerator  string  `json:"accelerator"`
	Count        float64 `json:"count"`
	Cloud        string  `json:"cloud"`
	InstanceType string  `json:"instance_type"`
	DeviceMemGiB float64 `json:"device_memory_gib,omitempty"`
	VCPUs        float64 `json:"vcpus"`
	MemoryGiB    float64 `json:"memory_gib"`
	Price        float64 `json:"price"`
	SpotPrice    float64 `json:"spot_price,omitempty"`
	Region       string  `json:"region"`
}

// GPUQuery filters `show-gpus`.
type GPUQuery struct {
	// Name matches accelerator names case-insensitively, as a substring.
	Name   string
	Clouds []string // empty: every cloud
	// AllRegions lists every region; otherwise each instance type's
	// cheapest region only.
	AllRegions bool
	Extra      []Offer
}

// GPUs lists accelerator offers grouped by accelerator name.
func (c *Catalog) GPUs(q GPUQuery) map[string][]GPUOffer {
	var offers []Offer
	for _, cloud := range Clouds {
		if len(q.Clouds) > 0 && !contains(q.Clouds, cloud) {
			continue
		}
		if cloud == "gcp" {
			offers = append(offers, c.gcpOffers("", "")...)
			continue
		}
		offers = append(offers, c.offers[cloud]...)
	}
	for _, o := range q.Extra {
		if len(q.Clouds) == 0 || contains(q.Clouds, o.Cloud) {
			offers = append(offers, o)
		}
	}
	type key struct {
		cloud, it, acc string
		count          float64
		region         string
	}
	best := map[key]GPUOffer{}
	for _, o := range offers {
		if o.Accelerator == "" {
			continue
		}
		if q.Name != "" && !strings.Contains(strings.ToLower(o.Accelerator), strings.ToLower(q.Name)) {
			continue
		}
		k := key{o.Cloud, o.InstanceType, o.Accelerator, o.AccCount, ""}
		if q.AllRegions {
			k.region = o.Region
		}
		g := GPUOffer{Accelerator: o.Accelerator, Count: o.AccCount, Cloud: o.Cloud, InstanceType: o.InstanceType,
			DeviceMemGiB: float64(o.GPUMemoryMiB) / 1024, VCPUs: o.VCPUs, MemoryGiB: o.MemoryGiB,
			Price: o.Price, SpotPrice: o.SpotPrice, Region: o.Region}
		cur, ok := best[k]
		if !ok || g.Price < cur.Price || (g.Price == cur.Price && g.Region < cur.Region) {
			best[k] = g
		}
	}
	out := map[string][]GPUOffer{}
	for _, g := range best {
		out[g.Accelerator] = append(out[g.Accelerator], g)
	}
	for _, list := range out {
		sort.Slice(list, func(i, j int) bool {
			a, b := list[i], list[j]
			if a.Count != b.Count {
				return a.Count < b.Count
			}
			if a.Price != b.Price {
				return a.Price < b.Price
			}
			if a.Cloud != b.Cloud {
				return a.Cloud < b.Cloud
			}
			if a.InstanceType != b.InstanceType {
				return a.InstanceType < b.InstanceType
			}
			return a.Region < b.Region
		})
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
