package procscan

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// WithEnv lists the pids whose environment holds exactly entry ("K=V").
// Processes this user may not read are skipped.
func WithEnv(entry string) []int {
	want := []byte(entry)
	return scan(func(kv []byte) bool { return bytes.Equal(kv, want) })
}

// WithEnvPrefix lists the pids with an environment entry starting with
// prefix ("K=" plus the start of a value).
func WithEnvPrefix(prefix string) []int {
	want := []byte(prefix)
	return scan(func(kv []byte) bool { return bytes.HasPrefix(kv, want) })
}

func scan(match func([]byte) bool) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for kv := range bytes.SplitSeq(b, []byte{0}) {
			if match(kv) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// stat returns the fields of /proc/PID/stat after the command name.
func stat(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// Parent is pid's parent, or 0 when unknown.
func Parent(pid int) int {
	f := stat(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// Zombie reports whether pid has exited but not been reaped yet.
func Zombie(pid int) bool {
	f := stat(pid)
	return len(f) > 0 && f[0] == "Z"
}
