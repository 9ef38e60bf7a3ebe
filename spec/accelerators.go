package spec

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// reAccMemory is a GPU memory request in an accelerator string ("80GB+").
var reAccMemory = regexp.MustCompile(`^[0-9]+[GgMmTt][Bb]\+?$`)

// accelerators reads `accelerators` in any of its forms: "NAME[:COUNT]",
// a memory request ("80GB+", "nvidia:24GB:2"), a mapping {NAME: COUNT}
// (any of them, the optimizer picks) or a list (in order of preference).
// listForm reports the list form.
func (d *decoder) accelerators(n *yaml.Node, path string) (choices []Accelerator, listForm, ok bool) {
	k, s := d.kindOf(n)
	var raw []struct {
		s    string
		node *yaml.Node
		path string
	}
	add := func(s string, node *yaml.Node, p string) {
		raw = append(raw, struct {
			s    string
			node *yaml.Node
			path string
		}{s, node, p})
	}
	switch k {
	case kStr:
		add(s.str, n, path)
	case kMap:
		ps, _ := d.mapping(n, path)
		for _, p := range ps {
			vk, vs := d.kindOf(p.v)
			switch vk {
			case kNull:
				add(p.key, p.k, path)
			case kInt, kFloat:
				add(p.key+":"+vs.str, p.v, child(path, p.key))
			default:
				d.errorf(d.deref(p.v), child(path, p.key), "an accelerator's count must be a number or null, got %s", d.describe(p.v))
			}
		}
		if len(ps) == 0 {
			d.errorf(d.deref(n), path, "must name at least one accelerator")
			return nil, false, false
		}
	case kSeq:
		items, _ := d.seq(n, path)
		listForm = true
		for i, it := range items {
			if str, ok := d.str(it, index(path, i)); ok {
				add(str, it, index(path, i))
			}
		}
		if len(items) == 0 {
			d.errorf(d.deref(n), path, "must name at least one accelerator")
			return nil, false, false
		}
	default:
		d.errorf(d.deref(n), path, "must be NAME or NAME:COUNT (e.g. \"A100:8\"), a mapping {NAME: COUNT} of alternatives, or a list in order of preference; got %s", d.describe(n))
		return nil, false, false
	}
	ok = true
	seen := map[string]bool{}
	for _, r := range raw {
		acc, err := parseAccelerator(r.s)
		if err != nil {
			d.errorf(d.deref(r.node), r.path, "%v", err)
			ok = false
			continue
		}
		if key := acc.String(); !seen[key] {
			seen[key] = true
			choices = append(choices, acc)
		}
	}
	return choices, listForm, ok
}

// parseAccelerator reads one accelerator string.
func parseAccelerator(s string) (Accelerator, error) {
	if strings.ContainsAny(strings.TrimSpace(s), " \t\n,") {
		return Accelerator{}, fmt.Errorf("invalid accelerator %q: one accelerator is NAME or NAME:COUNT; for alternatives write a mapping {A100:1, V100:1} (any of them) or a list [A100:1, V100:1] (in order)", s)
	}
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ":")
	bad := fmt.Errorf("invalid accelerator %q: write NAME or NAME:COUNT (e.g. \"A100:8\", \"T4:0.5\"), or a memory request like \"80GB+\"; several alternatives go in a list or a mapping", s)
	switch {
	case len(parts) == 3:
		if !reAccMemory.MatchString(parts[1]) {
			return Accelerator{}, fmt.Errorf("invalid accelerator %q: with a manufacturer, write MANUFACTURER:MEMORY:COUNT, e.g. \"nvidia:24GB:2\"", s)
		}
		return memoryAccelerator(parts[0], parts[1], parts[2], s)
	case len(parts) == 2 && reAccMemory.MatchString(parts[0]):
		return memoryAccelerator("", parts[0], parts[1], s)
	case len(parts) == 2 && reAccMemory.MatchString(parts[1]):
		return memoryAccelerator(parts[0], parts[1], "1", s)
	case len(parts) == 1 && reAccMemory.MatchString(parts[0]):
		return memoryAccelerator("", parts[0], "1", s)
	case len(parts) == 1:
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, " \t\n,") {
			return Accelerator{}, bad
		}
		return Accelerator{Name: s, Count: 1}, nil
	case len(parts) == 2:
		if strings.TrimSpace(parts[0]) == "" || strings.ContainsAny(parts[0], " \t\n,") {
			return Accelerator{}, bad
		}
		c, ok := parseFloat(parts[1])
		if !ok {
			return Accelerator{}, bad
		}
		if c <= 0 {
			return Accelerator{}, fmt.Errorf("invalid accelerator %q: the count must be positive", s)
		}
		return Accelerator{Name: parts[0], Count: c}, nil
	}
	return Accelerator{}, bad
}

func memoryAccelerator(manufacturer, memory, count, orig string) (Accelerator, error) {
	c, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil || c <= 0 {
		return Accelerator{}, fmt.Errorf("invalid accelerator %q: the count of a memory request must be a positive integer", orig)
	}
	gb, plus, err := parseSizeGB(memory, true, false)
	if err != nil || gb != math.Trunc(gb) || gb <= 0 {
		return Accelerator{}, fmt.Errorf("invalid accelerator %q: the memory must be a whole number of GB, e.g. \"24GB\" or \"80GB+\"", orig)
	}
	return Accelerator{Memory: formatGB(gb) + "GB" + plus, Manufacturer: strings.ToLower(manufacturer), Count: float64(c)}, nil
}

// isTPU reports an accelerator SkyPilot places on GCP or Kubernetes only.
func isTPU(a Accelerator) bool { return strings.Contains(strings.ToLower(a.Name), "tpu") }

// gkeTPU reports TPU names that only Kubernetes (GKE) offers.
func gkeTPU(a Accelerator) bool {
	n := strings.ToLower(a.Name)
	for _, p := range []string{"tpu-v4-podslice", "tpu-v5-lite-device", "tpu-v5-lite-podslice", "tpu-v5p-slice", "tpu-v6e-slice"} {
		if n == p {
			return true
		}
	}
	return false
}
