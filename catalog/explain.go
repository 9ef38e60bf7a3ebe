package catalog

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sky-coord/sky-coord/spec"
)

// Why no offer fits, in words that name what does exist.

// accelWhy explains an accelerator that matches nothing: other counts of
// the same name, or names close to it.
func (c *Catalog) accelWhy(a spec.Accelerator, want, cloud string, pool []Offer) string {
	if a.Name == "" {
		return fmt.Sprintf("no offer for %s: no accelerator has %s of memory", want, a.Memory)
	}
	counts := map[float64]bool{}
	for _, o := range pool {
		if strings.EqualFold(o.Accelerator, a.Name) {
			counts[o.AccCount] = true
		}
	}
	hostless := false // GCP sells the GPU but no host VM in the catalog fits
	for _, g := range c.gcpGPU {
		if strings.EqualFold(g.Name, a.Name) && (cloud == "" || cloud == "gcp") {
			counts[g.Count] = true
			hostless = hostless || near(g.Count, a.Count)
		}
	}
	if hostless {
		return fmt.Sprintf("no offer for %q: GCP sells it, but no host VM in the catalog meets its cpus and memory (by default %s); set resources.cpus and resources.memory, or run `sky-coord catalog update` for the full catalog",
			a.Name+":"+fmtCount(a.Count), gcpHostDefaults(a.Name, a.Count))
	}
	if len(counts) > 0 {
		var cs []float64
		for n := range counts {
			cs = append(cs, n)
		}
		sort.Float64s(cs)
		var ss []string
		for _, n := range cs {
			ss = append(ss, fmtCount(n))
		}
		return fmt.Sprintf("no offer for %q; available counts: %s (see `sky-coord show-gpus %s`)", a.Name+":"+fmtCount(a.Count), strings.Join(ss, ", "), a.Name)
	}
	if s := c.suggest(a.Name); s != "" {
		return fmt.Sprintf("no offer for %q; did you mean %q? (see `sky-coord show-gpus`)", a.Name+":"+fmtCount(a.Count), s)
	}
	return fmt.Sprintf("no offer for %q: no cloud in the catalog offers %s (see `sky-coord show-gpus`)", a.Name+":"+fmtCount(a.Count), a.Name)
}

// suggest is the known accelerator name nearest to name, or "".
func (c *Catalog) suggest(name string) string {
	low := strings.ToLower(name)
	best, bestD := "", 1<<30
	for _, n := range c.names {
		ln := strings.ToLower(n)
		if ln == low {
			continue
		}
		d := spec.EditDistance(low, ln)
		if strings.HasPrefix(ln, low) || strings.HasPrefix(low, ln) {
			d = min(d, 1+abs(len(ln)-len(low))/4)
		}
		if d < bestD || (d == bestD && n < best) {
			best, bestD = n, d
		}
	}
	if bestD <= max(2, len(name)/3) {
		return best
	}
	return ""
}

// describe is a candidate as a user wrote it: "A100:8", "cpus=4+", ...
func describe(r spec.Resources) string {
	var parts []string
	if a := r.Accelerators; a != nil {
		parts = append(parts, a.String())
	}
	if r.InstanceType != "" {
		parts = append(parts, r.InstanceType)
	}
	if r.CPUs != "" {
		parts = append(parts, "cpus="+r.CPUs)
	}
	if r.Memory != "" {
		parts = append(parts, "memory="+r.Memory)
	}
	if r.UseSpot {
		parts = append(parts, "spot")
	}
	s := strings.Join(parts, ", ")
	if len(parts) == 0 || (len(parts) == 1 && r.UseSpot) {
		s = strings.TrimSpace("a CPU node " + s)
	}
	if r.Cloud != "" {
		loc := r.Cloud
		if r.Region != "" {
			loc += "/" + r.Region
		}
		if r.Zone != "" {
			loc += "/" + r.Zone
		}
		s += " on " + loc
	}
	return s
}

// nearest names up to three offers that were left before the last filter.
func nearest(os []Offer, spot bool) string {
	cs := make([]Choice, len(os))
	for i, o := range os {
		p := o.Price
		if spot {
			p = o.SpotPrice
		}
		cs[i] = Choice{Offer: o, NumNodes: 1, HourlyCost: p}
	}
	sortChoices(cs)
	cs = dedupeByType(cs)
	var ss []string
	for i, c := range cs {
		if i == 3 {
			break
		}
		d := fmt.Sprintf("%s %s (%g vCPUs, %g GB", c.Cloud, c.InstanceType, c.VCPUs, c.MemoryGiB)
		if c.Accelerator != "" {
			d += ", " + c.Accelerator + ":" + fmtCount(c.AccCount)
		}
		ss = append(ss, d+")")
	}
	return strings.Join(ss, ", ")
}

func dedupeByType(cs []Choice) []Choice {
	seen := map[string]bool{}
	var out []Choice
	for _, c := range cs {
		k := c.Cloud + "/" + c.InstanceType
		if !seen[k] {
			seen[k] = true
			out = append(out, c)
		}
	}
	return out
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
