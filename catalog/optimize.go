package catalog

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/sky-coord/sky-coord/spec"
)

// Request is what the optimizer plans for.
type Request struct {
	Resources spec.Resources
	NumNodes  int
	// Enabled are the clouds that may be used (catalog clouds with
	// credentials and a provider); nil means every catalog cloud. Offers
	// on other clouds only shape the error when nothing is left.
	Enabled map[string]bool
	// Disabled says why a cloud is not enabled, for errors.
	Disabled map[string]string
	// Extra are offers that are not in a catalog: the local machine, ssh
	// pools.
	Extra []Offer
	// Blocked offers are left out (failed attempts).
	Blocked []Block
}

// Block leaves out every offer that matches its non-empty fields.
type Block struct {
	Cloud        string `json:"cloud"`
	Region       string `json:"region,omitempty"`
	Zone         string `json:"zone,omitempty"`
	InstanceType string `json:"instance_type,omitempty"`
}

// Matches reports whether the block covers an offer.
func (b Block) Matches(o Offer) bool {
	return b.Cloud == o.Cloud && (b.Region == "" || b.Region == o.Region) &&
		(b.Zone == "" || b.Zone == o.Zone) && (b.InstanceType == "" || b.InstanceType == o.InstanceType)
}

// String is cloud[/region[/zone]] [instance type].
func (b Block) String() string {
	s := b.Cloud
	if b.Region != "" {
		s += "/" + b.Region
	}
	if b.Zone != "" {
		s += "/" + b.Zone
	}
	if b.InstanceType != "" {
		s += " " + b.InstanceType
	}
	return s
}

// Choice is one launchable offer for the whole cluster.
type Choice struct {
	Offer
	NumNodes int  `json:"num_nodes"`
	UseSpot  bool `json:"use_spot"`
	// HourlyCost is for all nodes.
	HourlyCost float64 `json:"hourly_cost"`
}

// Infra is cloud/region/zone.
func (c Choice) Infra() string {
	s := c.Cloud
	if c.Region != "" {
		s += "/" + c.Region
	}
	if c.Zone != "" && c.Zone != c.Region {
		s += "/" + c.Zone
	}
	return s
}

// Resources is SkyPilot's short form: "1x p3.2xlarge (V100:1)".
func (c Choice) Resources() string {
	s := fmt.Sprintf("%dx %s", c.NumNodes, c.InstanceType)
	if c.Accelerator != "" {
		s += fmt.Sprintf(" (%s:%s)", c.Accelerator, fmtCount(c.AccCount))
	}
	if c.UseSpot {
		s += " [spot]"
	}
	return s
}

// NoOfferError says why no offer fits.
type NoOfferError struct{ Reasons []string }

func (e *NoOfferError) Error() string {
	return strings.Join(e.Reasons, "; ")
}

// Optimize returns every launchable offer for the request, best first:
// cheapest first across candidates (any_of, accelerator mappings), or the
// user's order of candidates (ordered, accelerator lists), cheapest first
// within each. Blocked offers are left out; when every fitting offer is
// blocked the list is empty and the error is nil.
func (c *Catalog) Optimize(req Request) ([]Choice, error) {
	n := req.NumNodes
	if n < 1 {
		n = 1
	}
	cands, ordered := req.Resources.Candidates()
	var all []Choice
	var reasons []string
	matched := false
	for _, r := range cands {
		fit, why := c.fitting(r, req)
		if len(fit) == 0 {
			reasons = append(reasons, why)
			continue
		}
		matched = true
		var group []Choice
		for _, o := range fit {
			if blocked(o, req.Blocked) {
				continue
			}
			price := o.Price
			if r.UseSpot {
				price = o.SpotPrice
			}
			group = append(group, Choice{Offer: o, NumNodes: n, UseSpot: r.UseSpot, HourlyCost: round(price * float64(n))})
		}
		sortChoices(group)
		all = append(all, group...)
	}
	if !matched {
		return nil, &NoOfferError{Reasons: dedupe(reasons)}
	}
	if !ordered {
		sortChoices(all)
	}
	return dedupeChoices(all), nil
}

func blocked(o Offer, bs []Block) bool {
	for _, b := range bs {
		if b.Matches(o) {
			return true
		}
	}
	return false
}

func sortChoices(cs []Choice) {
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.HourlyCost != b.HourlyCost {
			return a.HourlyCost < b.HourlyCost
		}
		if a.Cloud != b.Cloud {
			return a.Cloud < b.Cloud
		}
		if a.Region != b.Region {
			return a.Region < b.Region
		}
		if a.Zone != b.Zone {
			return a.Zone < b.Zone
		}
		return a.InstanceType < b.InstanceType
	})
}

func dedupeChoices(cs []Choice) []Choice {
	type key struct{ cloud, region, zone, it string }
	seen := map[key]bool{}
	out := cs[:0]
	for _, c := range cs {
		k := key{c.Cloud, c.Region, c.Zone, c.InstanceType}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, c)
	}
	return out
}

// fitting returns the offers that meet one candidate on enabled clouds;
// when none does it says why, naming the nearest offers.
func (c *Catalog) fitting(r spec.Resources, req Request) ([]Offer, string) {
	want := describe(r)
	pool := c.pool(r)
	for _, o := range req.Extra {
		if r.Cloud == o.Cloud || (r.Cloud == "" && !o.Unknown) {
			pool = append(pool, o)
		}
	}
	if r.Cloud != "" && len(pool) == 0 {
		if _, known := c.offers[r.Cloud]; !known && !hasCloud(req.Extra, r.Cloud) {
			return nil, fmt.Sprintf("no offer for %s: infra %q has no catalog and no enabled pool here", want, r.Cloud)
		}
	}
	steps := []struct {
		what string
		keep func(o Offer) bool
	}{
		{"", func(o Offer) bool { return true }},
	}
	if a := r.Accelerators; a != nil {
		steps = append(steps, struct {
			what string
			keep func(o Offer) bool
		}{"accelerator", func(o Offer) bool { return accMatches(*a, o) }})
	} else if r.InstanceType == "" {
		steps = append(steps, struct {
			what string
			keep func(o Offer) bool
		}{"default instance families", func(o Offer) bool { return o.Elastic || defaultFamily(o) }})
	}
	add := func(what string, keep func(o Offer) bool) {
		steps = append(steps, struct {
			what string
			keep func(o Offer) bool
		}{what, keep})
	}
	if r.InstanceType != "" {
		add(fmt.Sprintf("instance_type %s", r.InstanceType), func(o Offer) bool { return o.InstanceType == r.InstanceType })
	}
	cpus, mem := r.CPUs, r.Memory
	if r.Accelerators == nil && r.InstanceType == "" && cpus == "" && mem == "" {
		// SkyPilot's default CPU node: 8+ vCPUs (catalog clouds only; an
		// elastic node gives what its machine has).
		add("the default cpus=8+", func(o Offer) bool { return o.Elastic || amountFits("8+", o.VCPUs, o.VCPUs, false) })
	}
	if cpus != "" {
		add("cpus="+cpus, func(o Offer) bool { return amountFits(cpus, o.VCPUs, o.VCPUs, o.Elastic) })
	}
	if mem != "" {
		add("memory="+mem, func(o Offer) bool { return memoryFits(mem, o, o.Elastic) })
	} else if r.Accelerators == nil && r.InstanceType == "" {
		add("memory=4x vCPUs", func(o Offer) bool { return o.Elastic || o.MemoryGiB >= 4*o.VCPUs })
	}
	if r.Region != "" {
		add("region "+r.Region, func(o Offer) bool { return strings.EqualFold(o.Region, r.Region) })
	}
	if r.Zone != "" {
		add("zone "+r.Zone, func(o Offer) bool { return strings.EqualFold(o.Zone, r.Zone) })
	}
	if r.UseSpot {
		add("spot", func(o Offer) bool { return o.SpotPrice > 0 })
	}
	if r.MaxHourlyCost > 0 {
		add(fmt.Sprintf("max_hourly_cost %g", r.MaxHourlyCost), func(o Offer) bool {
			p := o.Price
			if r.UseSpot {
				p = o.SpotPrice
			}
			return p <= r.MaxHourlyCost
		})
	}
	cur := pool
	for i, st := range steps {
		var next []Offer
		for _, o := range cur {
			location := strings.HasPrefix(st.what, "region ") || strings.HasPrefix(st.what, "zone ")
			if st.keep(o) || (o.Unknown && !location) {
				next = append(next, o)
			}
		}
		if len(next) == 0 {
			if i == 1 && r.Accelerators != nil {
				return nil, c.accelWhy(*r.Accelerators, want, r.Cloud, pool)
			}
			if i == 0 {
				return nil, fmt.Sprintf("no offer for %s", want)
			}
			return nil, fmt.Sprintf("no offer for %s: %s leaves none (nearest: %s)", want, st.what, nearest(cur, r.UseSpot))
		}
		cur = next
	}
	// Clouds that are not enabled.
	var enabled []Offer
	disabled := map[string]bool{}
	for _, o := range cur {
		if o.Elastic || req.Enabled == nil || req.Enabled[o.Cloud] {
			enabled = append(enabled, o)
		} else {
			disabled[o.Cloud] = true
		}
	}
	if len(enabled) == 0 {
		var names, whys []string
		for cl := range disabled {
			names = append(names, cl)
		}
		sort.Strings(names)
		for _, cl := range names {
			if w := req.Disabled[cl]; w != "" {
				whys = append(whys, cl+": "+w)
			}
		}
		msg := fmt.Sprintf("%s is offered only on %s, which %s not enabled here", want, strings.Join(names, ", "), plural(len(names), "is", "are"))
		if len(whys) > 0 {
			msg += " (" + strings.Join(whys, "; ") + ")"
		}
		return nil, msg + "; run `sky-coord check` to see how to enable a cloud, or `launch --dryrun` to plan without one"
	}
	return enabled, ""
}

func hasCloud(os []Offer, cloud string) bool {
	for _, o := range os {
		if o.Cloud == cloud {
			return true
		}
	}
	return false
}

// pool is the catalog offers a candidate may use before filtering.
func (c *Catalog) pool(r spec.Resources) []Offer {
	var pool []Offer
	for _, cloud := range Clouds {
		if r.Cloud != "" && r.Cloud != cloud {
			continue
		}
		if cloud == "gcp" {
			for _, o := range c.offers[cloud] {
				if _, _, own := gcpMachineAccelerator(o.InstanceType); !own {
					pool = append(pool, o)
				}
			}
			pool = append(pool, c.gcpOffers(r.CPUs, r.Memory)...)
			continue
		}
		pool = append(pool, c.offers[cloud]...)
	}
	return pool
}

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
		d := editDistance(low, ln)
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

func accMatches(a spec.Accelerator, o Offer) bool {
	if o.Accelerator == "" {
		return false
	}
	if a.Name == "" { // memory request
		if o.GPUMemoryMiB == 0 {
			return false
		}
		v, plus, ok := parseAmount(strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(a.Memory), "+"), "GB") + suffixPlus(a.Memory))
		if !ok {
			return false
		}
		gb := float64(o.GPUMemoryMiB) / 1024
		if (plus && gb+0.01 < v) || (!plus && math.Abs(gb-v) > 0.5) {
			return false
		}
		return a.Count == 0 || near(o.AccCount, a.Count) || (o.Elastic && a.Count <= o.AccCount)
	}
	if !strings.EqualFold(o.Accelerator, a.Name) {
		return false
	}
	if o.Elastic {
		return a.Count <= o.AccCount+0.01
	}
	return near(o.AccCount, a.Count)
}

func suffixPlus(s string) string {
	if strings.HasSuffix(s, "+") {
		return "+"
	}
	return ""
}

var defaultFamilies = []string{
	// AWS: general purpose, compute and memory optimized.
	"m6i.", "c6i.", "r6i.", "m7i.", "c7i.", "r7i.",
	// GCP.
	"n2-standard-", "n2-highmem-", "n2-highcpu-", "n4-standard-", "n4-highcpu-", "n4-highmem-",
}

// defaultFamily: a CPU-only task without an instance type gets one of the
// current general families, as SkyPilot picks.
func defaultFamily(o Offer) bool {
	return o.Accelerator == "" && hasAnyPrefix(o.InstanceType, defaultFamilies)
}

// parseAmount reads "8", "8+" or "4x" (x: a ratio).
func parseAmount(s string) (v float64, plus bool, ok bool) {
	s = strings.TrimSpace(s)
	plus = strings.HasSuffix(s, "+")
	s = strings.TrimSuffix(strings.TrimSuffix(s, "+"), "x")
	v, err := strconv.ParseFloat(s, 64)
	return v, plus, err == nil
}

// amountFits: "N" is exactly N, "N+" at least N; an elastic offer meets
// anything up to what it has.
func amountFits(req string, have, _ float64, elastic bool) bool {
	v, plus, ok := parseAmount(req)
	if !ok {
		return false
	}
	if elastic {
		return v <= have+0.01
	}
	if plus {
		return have+0.01 >= v
	}
	return math.Abs(have-v) <= 0.01
}

func memoryFits(req string, o Offer, elastic bool) bool {
	if strings.HasSuffix(req, "x") {
		v, _, ok := parseAmount(req)
		return ok && (elastic || o.MemoryGiB+0.01 >= v*o.VCPUs)
	}
	return amountFits(req, o.MemoryGiB, 0, elastic)
}

func near(a, b float64) bool { return math.Abs(a-b) <= 0.01 }

func round(v float64) float64 { return math.Round(v*1e5) / 1e5 }

func fmtCount(n float64) string { return strconv.FormatFloat(n, 'f', -1, 64) }

func itoa(n int) string { return strconv.Itoa(n) }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
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

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
