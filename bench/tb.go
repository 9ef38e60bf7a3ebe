package main

import (
	"fmt"
	"log"
	"os"
	"sync"
	"testing"
)

// tb lets the benchmark use test helpers that take a testing.TB (the
// namespace hosts of testenv/hosts) outside `go test`. Fatal and Skip end
// the helper's call by panicking with tbStop, which withTB recovers;
// methods not overridden here are not used by those helpers (calling one
// panics on the nil embedded interface).
type tb struct {
	testing.TB
	name    string
	verbose bool

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	errs     []string
	skip     string
	dirs     []string
}

// tbStop is the panic value of Fatal and Skip.
type tbStop struct{}

// withTB runs fn with a fresh tb, then its cleanups (also when fn fails,
// panics through Fatal or is skipped; and at the run's cleanup if the
// process is interrupted). It returns the skip reason, or the failure.
func withTB(name string, verbose bool, fn func(t *tb) error) (skipped string, err error) {
	t := &tb{name: name, verbose: verbose}
	done := atCleanup(t.runCleanups)
	defer done()
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(tbStop); !ok {
				panic(r)
			}
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		switch {
		case t.skip != "":
			skipped, err = t.skip, nil
		case len(t.errs) > 0:
			err = fmt.Errorf("%s: %s", name, joinLines(t.errs))
		case t.failed && err == nil:
			err = fmt.Errorf("%s failed", name)
		}
	}()
	err = fn(t)
	return "", err
}

func joinLines(s []string) string {
	out := ""
	for i, l := range s {
		if i > 0 {
			out += "; "
		}
		out += l
	}
	return out
}

func (t *tb) runCleanups() {
	t.mu.Lock()
	fns := t.cleanups
	t.cleanups = nil
	dirs := t.dirs
	t.dirs = nil
	before := len(t.errs)
	t.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(tbStop); !ok {
						log.Printf("%s: cleanup panicked: %v", t.name, r)
					}
				}
			}()
			fns[i]()
		}()
	}
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
	// Failures of the cleanups themselves (a host not removed) come after
	// the section's result was taken: say them here.
	t.mu.Lock()
	errs := t.errs[before:]
	t.mu.Unlock()
	for _, e := range errs {
		log.Printf("%s: %s", t.name, e)
	}
}

func (t *tb) Helper()      {}
func (t *tb) Name() string { return t.name }

func (t *tb) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

func (t *tb) TempDir() string {
	d, err := os.MkdirTemp("", "sky-coord-bench-")
	if err != nil {
		t.Fatal(err)
	}
	t.mu.Lock()
	t.dirs = append(t.dirs, d)
	t.mu.Unlock()
	return d
}

func (t *tb) Log(args ...any) { t.Logf("%s", fmt.Sprint(args...)) }
func (t *tb) Logf(format string, args ...any) {
	if t.verbose {
		log.Printf("%s: %s", t.name, fmt.Sprintf(format, args...))
	}
}

func (t *tb) Fail() {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}

func (t *tb) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *tb) Error(args ...any) { t.Errorf("%s", fmt.Sprint(args...)) }
func (t *tb) Errorf(format string, args ...any) {
	t.mu.Lock()
	t.failed = true
	t.errs = append(t.errs, fmt.Sprintf(format, args...))
	t.mu.Unlock()
}

func (t *tb) FailNow()                          { t.Fail(); panic(tbStop{}) }
func (t *tb) Fatal(args ...any)                 { t.Error(args...); panic(tbStop{}) }
func (t *tb) Fatalf(format string, args ...any) { t.Errorf(format, args...); panic(tbStop{}) }

func (t *tb) Skip(args ...any) { t.Skipf("%s", fmt.Sprint(args...)) }
func (t *tb) Skipf(format string, args ...any) {
	t.mu.Lock()
	t.skip = fmt.Sprintf(format, args...)
	t.mu.Unlock()
	panic(tbStop{})
}
func (t *tb) SkipNow() { t.Skip("skipped") }
func (t *tb) Skipped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.skip != ""
}

func (t *tb) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if had {
			_ = os.Setenv(key, old)
		} else {
			_ = os.Unsetenv(key)
		}
	})
}
