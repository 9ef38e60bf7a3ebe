package local

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// markedPIDs lists the processes whose environment carries
// SKY_COORD_NODE=marker. Processes of other users cannot be read and are
// not ours.
func markedPIDs(marker string) []int {
	want := []byte(api.MarkerEnv + "=" + marker + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || len(env) == 0 {
			continue
		}
		if bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killMarked stops every process of a node: SIGTERM, then SIGKILL for
// whatever is left after killWait, and waits until none is left.
func killMarked(ctx context.Context, marker string) error {
	pids := markedPIDs(marker)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(killWait)
	for len(pids) > 0 {
		if time.Now().After(deadline) {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		pids = markedPIDs(marker)
		if time.Now().After(deadline.Add(10 * time.Second)) {
			return errStuck(pids)
		}
	}
	return nil
}
