package local

import (
	"context"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/procscan"
)

// markedPIDs lists the processes whose environment carries
// SKY_COORD_NODE=marker, this process excepted.
func markedPIDs(marker string) []int {
	self := os.Getpid()
	return slices.DeleteFunc(procscan.WithEnv(api.MarkerEnv+"="+marker), func(pid int) bool { return pid == self })
}

// killMarked stops every process of a node: SIGTERM, then SIGKILL for
// whatever is left after killWait, and waits until none is left.
func killMarked(ctx context.Context, marker string) error {
	return killMarkedWith(ctx, marker, syscall.SIGTERM)
}

// killMarkedNow kills every process of a node at once with SIGKILL, as a
// machine that vanishes would: nothing gets to report or clean up.
func killMarkedNow(ctx context.Context, marker string) error {
	return killMarkedWith(ctx, marker, syscall.SIGKILL)
}

func killMarkedWith(ctx context.Context, marker string, sig syscall.Signal) error {
	pids := markedPIDs(marker)
	for _, pid := range pids {
		_ = syscall.Kill(pid, sig)
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
