package spec

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// memoryUnits are SkyPilot's size units (constants.MEMORY_SIZE_UNITS), in
// bytes; the order matters (first suffix match wins, as in SkyPilot).
var memoryUnits = []struct {
	suffix string
	bytes  float64
}{
	{"kb", 1 << 10}, {"ki", 1 << 10}, {"mb", 1 << 20}, {"mi", 1 << 20},
	{"gb", 1 << 30}, {"gi", 1 << 30}, {"tb", 1 << 40}, {"ti", 1 << 40},
	{"pb", 1 << 50}, {"pi", 1 << 50},
}

// reSize is MEMORY_SIZE_PATTERN: an integer with an optional unit.
var reSize = regexp.MustCompile(`^[0-9]+(kb|ki|mb|mi|gb|gi|tb|ti|pb|pi|KB|KI|MB|MI|GB|GI|TB|TI|PB|PI|Kb|Ki|Mb|Mi|Gb|Gi|Tb|Ti|Pb|Pi)?$`)

// parseFloat is Python's float() for the strings a task file holds:
// surrounding spaces and underscores between digits are allowed.
func parseFloat(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "_") {
		s = strings.ReplaceAll(s, "_", "")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// parseSizeGB converts a size ("64", "64GB", "1TB", "512Mi") to GB. A bare
// number is already GB. suffix is the "+" (or "x") that followed it.
func parseSizeGB(s string, allowPlus, allowX bool) (gb float64, suffix string, err error) {
	v := s
	if allowPlus && strings.HasSuffix(v, "+") {
		v, suffix = v[:len(v)-1], "+"
	}
	if allowX && suffix == "" && strings.HasSuffix(v, "x") {
		v, suffix = v[:len(v)-1], "x"
	}
	if f, ok := parseFloat(v); ok {
		return f, suffix, nil
	}
	lv := strings.ToLower(v)
	for _, u := range memoryUnits {
		if strings.HasSuffix(lv, u.suffix) {
			if f, ok := parseFloat(lv[:len(lv)-len(u.suffix)]); ok {
				return f * u.bytes / (1 << 30), suffix, nil
			}
		}
	}
	return 0, "", fmt.Errorf("invalid size %q", s)
}

// formatGB prints a size in GB without a needless ".0".
func formatGB(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// timeUnits are minutes per unit (constants.TIME_UNITS).
var timeUnits = map[string]int{"m": 1, "h": 60, "d": 24 * 60, "w": 7 * 24 * 60}

var reTimeMinutes = regexp.MustCompile(`^([0-9]+)([mhdwMHDW]?)$`)

// parseMinutes reads "30", "30m", "2h", "1d", "1w" as minutes.
func parseMinutes(s string) (int, bool) {
	m := reTimeMinutes.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	v, err := strconv.Atoi(m[1])
	if err != nil || v > 1<<30 {
		return 0, false
	}
	mult := 1
	if m[2] != "" {
		mult = timeUnits[strings.ToLower(m[2])]
	}
	if v > math.MaxInt32/mult {
		return 0, false
	}
	return v * mult, true
}

// portRange is an inclusive range of ports.
type portRange struct{ lo, hi int }

// parsePort reads "8080" or "10000-10010".
func parsePort(s string) (portRange, error) {
	if isDigits(s) {
		p, err := checkPort(s)
		return portRange{p, p}, err
	}
	parts := strings.Split(s, "-")
	if len(parts) != 2 {
		return portRange{}, fmt.Errorf("invalid port range %q: write FROM-TO with FROM <= TO, e.g. \"10000-10010\"", s)
	}
	lo, err := checkPort(parts[0])
	if err != nil {
		return portRange{}, err
	}
	hi, err := checkPort(parts[1])
	if err != nil {
		return portRange{}, err
	}
	if lo > hi {
		return portRange{}, fmt.Errorf("invalid port range %q: FROM must not exceed TO", s)
	}
	return portRange{lo, hi}, nil
}

func checkPort(s string) (int, error) {
	if !isDigits(s) {
		return 0, fmt.Errorf("invalid port %q: use a number between 1 and 65535", s)
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("invalid port %q: use a number between 1 and 65535", s)
	}
	return p, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// simplifyPorts merges ranges: ["1-2", "3", "5-6"] -> ["1-3", "5-6"].
func simplifyPorts(rs []portRange) []string {
	if len(rs) == 0 {
		return nil
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo < rs[j].lo })
	merged := []portRange{rs[0]}
	for _, r := range rs[1:] {
		last := &merged[len(merged)-1]
		if r.lo <= last.hi+1 {
			last.hi = max(last.hi, r.hi)
			continue
		}
		merged = append(merged, r)
	}
	out := make([]string, len(merged))
	for i, r := range merged {
		if r.lo == r.hi {
			out[i] = strconv.Itoa(r.lo)
		} else {
			out[i] = fmt.Sprintf("%d-%d", r.lo, r.hi)
		}
	}
	return out
}

// countPorts is how many ports the simplified ranges hold.
func countPorts(ports []string) int {
	n := 0
	for _, p := range ports {
		r, err := parsePort(p)
		if err == nil {
			n += r.hi - r.lo + 1
		}
	}
	return n
}
