package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/sky-coord/sky-coord/coordinator"
)

// raftBench times the coordinator's write path (coordinator.Server
// AppendEvent: encode, Raft, raft-boltdb, the FSM's Apply) beside bare
// hashicorp/raft with raft-boltdb and a no-op FSM, both single-voter on
// this disk, in the same run: commit latency with one writer, and
// throughput with 64 concurrent writers.
type raftBench struct {
	writes int
}

type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnap{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnap struct{}

func (nopSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnap) Release()                          {}

func bareRaft(dir string) (*raft.Raft, func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		return nil, nil, err
	}
	_, trans := raft.NewInmemTransport("bare")
	conf := raft.DefaultConfig()
	conf.LocalID = "bare"
	conf.Logger = hclog.NewNullLogger()
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	if err := raft.BootstrapCluster(conf, store, store, snaps, trans, raft.Configuration{Servers: []raft.Server{{ID: "bare", Address: trans.LocalAddr()}}}); err != nil {
		return nil, nil, err
	}
	r, err := raft.NewRaft(conf, nopFSM{}, store, store, snaps, trans)
	if err != nil {
		return nil, nil, err
	}
	for r.State() != raft.Leader {
		time.Sleep(5 * time.Millisecond)
	}
	return r, func() { _ = r.Shutdown().Error(); _ = store.Close() }, nil
}

// latencies runs write n times with one writer and returns each time.
func latencies(n int, write func() error) ([]time.Duration, error) {
	var lat []time.Duration
	for i := 0; i < n; i++ {
		t := time.Now()
		if err := write(); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t))
	}
	return lat, nil
}

// throughput runs write n times spread over 64 writers and returns the
// writes per second.
func throughput(n int, write func() error) (float64, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	per := n / 64
	for w := 0; w < 64; w++ {
		wg.Go(func() {
			for i := 0; i < per; i++ {
				if err := write(); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(per*64) / time.Since(start).Seconds(), firstErr
}

// throughputRounds is how many times each side's throughput is measured,
// the two sides taking turns; the median counts.
const throughputRounds = 5

func (rb *raftBench) run(ctx context.Context) string {
	var b strings.Builder
	b.WriteString("## Raft write path: the coordinator beside bare hashicorp/raft\n\n")
	dir, err := os.MkdirTemp("", "sky-coord-bench-raft-")
	if err != nil {
		die(err)
	}
	defer os.RemoveAll(dir)
	r, closeBare, err := bareRaft(filepath.Join(dir, "bare"))
	if err != nil {
		die(err)
	}
	defer closeBare()
	payload := []byte(strings.Repeat("x", 120))
	bare := func() error { return r.Apply(payload, 10*time.Second).Error() }
	srv, err := coordinator.New(coordinator.Config{DataDir: filepath.Join(dir, "coord"), Token: "bench",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		die(err)
	}
	defer srv.Shutdown()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = srv.WaitLeader(wctx)
	cancel()
	if err != nil {
		die(err)
	}
	msg := strings.Repeat("x", 60)
	ours := func() error { return srv.AppendEvent("bench", msg) }
	bareLat, err := latencies(rb.writes, bare)
	if err != nil {
		die(err)
	}
	ourLat, err := latencies(rb.writes, ours)
	if err != nil {
		die(err)
	}
	var bareRounds, ourRounds []float64
	for range throughputRounds {
		bt, err := throughput(rb.writes, bare)
		if err != nil {
			die(err)
		}
		ot, err := throughput(rb.writes, ours)
		if err != nil {
			die(err)
		}
		bareRounds, ourRounds = append(bareRounds, bt), append(ourRounds, ot)
	}
	bareTput, ourTput := medianFloat(bareRounds), medianFloat(ourRounds)
	p50o, p50b := median(ourLat), median(bareLat)
	fmt.Fprintf(&b, "Single voter on this machine's disk (raft-boltdb, fsync on every commit), %d writes with one writer, then %d spread over 64 writers, %d times for each side, taking turns (the median counts). "+
		"sky-coord: `coordinator.Server.AppendEvent` (encode, Raft apply, the FSM's one Apply switch into the state); "+
		"bare: `raft.Apply` of a 120-byte entry to a no-op FSM, same Raft settings, both open at once.\n\n", rb.writes, rb.writes/64*64, throughputRounds)
	b.WriteString("| measure | sky-coord | bare raft (same run) | ratio | goal |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| commit latency p50, 1 writer | %s | %s | %.2f× | ≤ 2× |\n", ms(p50o), ms(p50b), p50o.Seconds()/p50b.Seconds())
	fmt.Fprintf(&b, "| commit latency p99, 1 writer | %s | %s | %.2f× | |\n", ms(percentile(ourLat, 99)), ms(percentile(bareLat, 99)), percentile(ourLat, 99).Seconds()/percentile(bareLat, 99).Seconds())
	fmt.Fprintf(&b, "| throughput, 64 writers | %.0f writes/s | %.0f writes/s | %.2f× | ≥ 0.7× |\n\n", ourTput, bareTput, ourTput/bareTput)
	fmt.Fprintf(&b, "Throughput rounds, writes/s — sky-coord: %s; bare: %s.\n\n", floats(ourRounds), floats(bareRounds))
	return b.String()
}
