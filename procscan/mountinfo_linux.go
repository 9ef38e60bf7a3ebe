package procscan

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	Point   string // where it is mounted
	FSType  string // "overlay", "fuse.sky-mount", ...
	Options string // the filesystem's own options ("rw,lowerdir=...")
}

// Mounts lists the mounts this process's mount namespace has, from
// /proc/self/mountinfo.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close() // read only
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID parent dev root point options [tags...] - fstype source super-options
		fields := strings.Fields(sc.Text())
		if len(fields) <= 4 {
			continue
		}
		m := Mount{Point: unescapeMountinfo(fields[4])}
		if i := slices.Index(fields, "-"); i > 4 && i+3 < len(fields) {
			m.FSType, m.Options = fields[i+1], unescapeMountinfo(fields[i+3])
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// MountPoints lists the mount points this process's mount namespace has.
func MountPoints() ([]string, error) {
	ms, err := Mounts()
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Point
	}
	return out, err
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
