// Command bench measures sky-coord beside reference figures taken in the
// same run and rewrites BENCHMARKS.md. Run it with `make bench` (it uses
// the binaries in bin/); -only runs some sections (and writes only those).
//
// Sections: launch (launch → first output), exec (submit → RUNNING), sync
// (workdir to 8 local nodes beside rsync),
// bootstrap (agent bootstrap of 8 fresh SSH hosts beside `ssh host true`;
// root), buckets (COPY and MOUNT from a loopback S3 endpoint beside
// rclone; MOUNT needs root and /dev/fuse), failover (leader SIGKILL of
// three replicas → writes served again).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// sections in report order.
var sections = []string{"launch", "exec", "sync", "bootstrap", "buckets", "failover", "raft"}

// failed is set by a section that could not measure; the run then exits 1
// after writing what it has.
var failed bool

func markFailed() { failed = true }

func main() {
	out := flag.String("out", "BENCHMARKS.md", "file to rewrite")
	bin := flag.String("bin", "bin", "directory with sky-coord and sky-agent")
	runs := flag.Int("exec-runs", 50, "exec submissions to time")
	only := flag.String("only", "", "comma-separated sections to run ("+strings.Join(sections, ", ")+"); all when empty")
	bootTrials := flag.Int("bootstrap-trials", 3, "bootstrap trials, each on fresh hosts")
	bootHosts := flag.Int("bootstrap-hosts", 8, "hosts per bootstrap trial")
	bucketTrials := flag.Int("bucket-trials", 3, "COPY and MOUNT trials, each tool once per trial")
	rcloneFlags := flag.String("rclone-flags", "", "extra flags for every rclone command of the buckets section (the report names them)")
	verbose := flag.Bool("v", false, "log what the test hosts and mounts log")
	flag.Parse()

	run := map[string]bool{}
	if *only == "" {
		for _, s := range sections {
			run[s] = true
		}
	} else {
		for _, s := range strings.Split(*only, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(sections, s) {
				log.Fatalf("-only: unknown section %q; sections are %s", s, strings.Join(sections, ", "))
			}
			run[s] = true
		}
	}
	absBin, err := filepath.Abs(*bin)
	if err != nil {
		die(err)
	}

	// An interrupt cancels ctx: the section in progress stops starting
	// things and returns, and the run removes hosts, mounts, processes
	// and temporary directories before exiting. A second interrupt (or a
	// section that does not stop within a minute) cleans up at once.
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		log.Printf("%s: stopping (interrupt again to stop at once)", s)
		cancel()
		select {
		case <-sig:
		case <-time.After(time.Minute):
		}
		log.Print("cleaning up")
		runCleanups()
		os.Exit(130)
	}()
	defer runCleanups()
	host, _ := os.Hostname()
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` on %s (%s, %d CPUs). Every figure below comes from the same run.",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), host, runtime.NumCPU())
	if *only != "" {
		fmt.Fprintf(&b, " Partial run: only %s (`go run ./bench -only %s`).", strings.Join(ordered(run), ", "), *only)
	}
	b.WriteString("\n\n")

	var e *env
	if run["launch"] || run["exec"] {
		e = newEnv(absBin)
	}
	if run["launch"] {
		b.WriteString(launchSection(ctx, e))
	}
	if run["exec"] {
		b.WriteString(execSection(ctx, e, *runs))
	}
	if run["sync"] {
		sb := &syncBench{bin: absBin}
		b.WriteString(sb.run(ctx))
	}
	if run["bootstrap"] {
		bb := &bootstrapBench{agent: filepath.Join(absBin, "sky-agent"), hosts: *bootHosts, trials: max(*bootTrials, 1), verbose: *verbose}
		b.WriteString(bb.run(ctx))
	}
	if run["buckets"] {
		bk := &bucketsBench{trials: max(*bucketTrials, 1), verbose: *verbose, rcloneFlags: strings.Fields(*rcloneFlags)}
		b.WriteString(bk.run(ctx))
	}
	if run["failover"] {
		fb := &failoverBench{bin: absBin, trials: 20}
		b.WriteString(fb.run(ctx))
	}
	if run["raft"] {
		rb := &raftBench{writes: 1024}
		b.WriteString(rb.run(ctx))
	}
	runCleanups()
	if ctx.Err() != nil {
		log.Print("interrupted: BENCHMARKS not written")
		os.Exit(130)
	}

	report := strings.TrimRight(b.String(), "\n") + "\n"
	if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
		die(err)
	}
	fmt.Print(report)
	if failed {
		log.Print("some measurements failed; see the report")
		os.Exit(1)
	}
}

// ordered lists the chosen sections in report order.
func ordered(run map[string]bool) []string {
	var out []string
	for _, s := range sections {
		if run[s] {
			out = append(out, s)
		}
	}
	return out
}

// machine describes this machine for a section's text: CPUs, memory,
// kernel.
func machine() string {
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			var kb int64
			if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
				mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
			}
		}
	}
	kernel := ""
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(data))
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %d CPUs%s%s, %s", host, runtime.NumCPU(), mem, kernel, runtime.Version())
}
