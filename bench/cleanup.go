package main

import (
	"fmt"
	"log"
	"os"
	"sync"
)

// The run's cleanups: everything the benchmark starts or creates (a
// coordinator, test hosts, FUSE mounts, rclone processes, temporary
// directories) registers its undo here at once, so that a failure, die or
// an interrupt removes it too. Each section also undoes what it made as
// soon as it is done with it.
var cleanups struct {
	mu    sync.Mutex
	stack []func()
}

// atCleanup registers f and returns a function that runs it now; either
// way f runs at most once.
func atCleanup(f func()) func() {
	var once sync.Once
	run := func() { once.Do(f) }
	cleanups.mu.Lock()
	cleanups.stack = append(cleanups.stack, run)
	cleanups.mu.Unlock()
	return run
}

// runCleanups runs every registered cleanup not run yet, newest first.
func runCleanups() {
	cleanups.mu.Lock()
	s := cleanups.stack
	cleanups.stack = nil
	cleanups.mu.Unlock()
	for i := len(s) - 1; i >= 0; i-- {
		s[i]()
	}
}

// die reports a failure the run cannot go on from, cleans up and exits.
func die(format any, args ...any) {
	msg := fmt.Sprint(format)
	if f, ok := format.(string); ok && len(args) > 0 {
		msg = fmt.Sprintf(f, args...)
	}
	log.Print(msg)
	runCleanups()
	os.Exit(1)
}
