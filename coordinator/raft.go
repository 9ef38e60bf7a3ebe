package coordinator

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/sky-coord/sky-coord/coordinator/fsm"
)

// embeddedID names the single replica of an embedded coordinator.
const embeddedID = "embedded"

// openRaft opens (or creates) a single-replica Raft under dir: a bolt log
// and stable store, file snapshots, and an in-memory transport, since a
// single voter never talks to anyone.
func openRaft(dir string, f *fsm.FSM, logger hclog.Logger) (*raft.Raft, func() error, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create raft directory %s: %w", dir, err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, nil, fmt.Errorf("open raft log %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logger)
	if err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("open raft snapshots in %s: %w", dir, err)
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(embeddedID))

	conf := raft.DefaultConfig()
	conf.LocalID = embeddedID
	conf.Logger = logger
	// A single voter elects itself after one heartbeat timeout; keep it
	// short so the first CLI call does not wait a second for it.
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.SnapshotThreshold = 4096
	conf.TrailingLogs = 2048

	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("read raft state in %s: %w", dir, err)
	}
	if !has {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: embeddedID, Address: trans.LocalAddr()}}}
		if err := raft.BootstrapCluster(conf, store, store, snaps, trans, cfg); err != nil {
			store.Close()
			return nil, nil, fmt.Errorf("bootstrap raft in %s: %w", dir, err)
		}
	}
	r, err := raft.NewRaft(conf, f, store, store, snaps, trans)
	if err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("start raft in %s: %w", dir, err)
	}
	closeFn := func() error {
		err := r.Shutdown().Error()
		return errors.Join(err, store.Close())
	}
	return r, closeFn, nil
}
