package catalog

import (
	"fmt"
	"sort"
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
	// Filters, in the order an explanation names the first that empties
	// the pool; the first keeps everything (a pool that is empty already).
	type step struct {
		what string
		keep func(o Offer) bool
		loc  bool // a location filter: unknown offers do not pass it free
	}
	steps := []step{{"", func(o Offer) bool { return true }, false}}
	add := func(what string, keep func(o Offer) bool) { steps = append(steps, step{what, keep, false}) }
	if a := r.Accelerators; a != nil {
		add("accelerator", func(o Offer) bool { return accMatches(*a, o) })
	} else if r.InstanceType == "" {
		add("default instance families", func(o Offer) bool { return o.Elastic || defaultFamily(o) })
	}
	if r.InstanceType != "" {
		add(fmt.Sprintf("instance_type %s", r.InstanceType), func(o Offer) bool { return o.InstanceType == r.InstanceType })
	}
	cpus, mem := r.CPUs, r.Memory
	if r.Accelerators == nil && r.InstanceType == "" && cpus == "" && mem == "" {
		// SkyPilot's default CPU node: 8+ vCPUs (catalog clouds only; an
		// elastic node gives what its machine has).
		add("the default cpus=8+", func(o Offer) bool { return o.Elastic || amountFits("8+", o.VCPUs, false) })
	}
	if cpus != "" {
		add("cpus="+cpus, func(o Offer) bool { return amountFits(cpus, o.VCPUs, o.Elastic) })
	}
	if mem != "" {
		add("memory="+mem, func(o Offer) bool { return memoryFits(mem, o, o.Elastic) })
	} else if r.Accelerators == nil && r.InstanceType == "" {
		add("memory=4x vCPUs", func(o Offer) bool { return o.Elastic || o.MemoryGiB >= 4*o.VCPUs })
	}
	if r.Region != "" {
		steps = append(steps, step{"region " + r.Region, func(o Offer) bool { return strings.EqualFold(o.Region, r.Region) }, true})
	}
	if r.Zone != "" {
		steps = append(steps, step{"zone " + r.Zone, func(o Offer) bool { return strings.EqualFold(o.Zone, r.Zone) }, true})
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
			if st.keep(o) || (o.Unknown && !st.loc) {
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
