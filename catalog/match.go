package catalog

import (
	"math"
	"strconv"
	"strings"

	"github.com/sky-coord/sky-coord/spec"
)

// The rules an offer must meet: accelerators, default families, cpus
// and memory amounts.

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
func amountFits(req string, have float64, elastic bool) bool {
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
	return amountFits(req, o.MemoryGiB, elastic)
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
