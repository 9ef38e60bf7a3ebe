package coordinator

import (
	"context"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sky-coord/sky-coord/coordinator/state"
	"github.com/sky-coord/sky-coord/transfer"
)

// The coordinator's chunk store keeps what the client uploaded (and, on
// this machine, what local nodes read their trees from). Without
// collection it grows with every version of every workdir. Each replica
// collects its own store: the packs that hold no chunk of a tree a job
// in the state still names, once they are older than chunkGCAge.
const (
	chunkGCAge      = time.Hour // an upload whose job is not recorded yet is younger
	chunkGCInterval = time.Hour
)

// chunkGCLoop collects the store a minute after start, then hourly.
func (s *Server) chunkGCLoop(ctx context.Context) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stopped:
			return
		case <-t.C:
		}
		if n, err := s.collectChunks(ctx); err != nil {
			s.log.Warn("collect the chunk store", "err", err)
		} else if n > 0 {
			s.log.Info("collected the chunk store", "chunks", n)
		}
		t.Reset(chunkGCInterval)
	}
}

// collectChunks removes what no job needs from the chunk store, and
// returns how many chunks went. It does nothing on a replica whose state
// may be behind (not the leader, and no word from one lately, or entries
// committed but not applied yet): it would not know every job.
func (s *Server) collectChunks(ctx context.Context) (int, error) {
	if !s.stateCurrent() {
		return 0, nil
	}
	var digests []string
	s.read(func(st *state.Store) {
		for _, jobs := range st.Jobs {
			for _, j := range jobs {
				for _, b := range j.Blobs {
					digests = append(digests, b.Digest)
				}
			}
		}
	})
	keep := make(map[transfer.ChunkID]bool)
	for _, d := range digests {
		id, err := transfer.ParseChunkID(d)
		if err != nil || keep[id] {
			continue
		}
		keep[id] = true
		m, err := transfer.FetchManifest(ctx, id, s.chunks) // no sources: only what is here
		if err != nil {
			continue // not here: nothing of it to keep
		}
		for _, c := range m.Chunks() {
			keep[c.ID] = true
		}
	}
	return s.chunks.RetainSince(ctx, func(id transfer.ChunkID) bool { return keep[id] }, time.Now().Add(-chunkGCAge))
}

// stateCurrent reports whether this replica's state holds every committed
// entry: on the leader, once a barrier has passed; on a follower, when it
// heard from the leader within a few seconds and has applied all it knows
// to be committed (a moment's lag only skips a round).
func (s *Server) stateCurrent() bool {
	if s.raft.State() == raft.Leader {
		return s.raft.Barrier(10*time.Second).Error() == nil
	}
	if time.Since(s.raft.LastContact()) > 5*time.Second {
		return false
	}
	commit, err := strconv.ParseUint(s.raft.Stats()["commit_index"], 10, 64)
	return err == nil && s.raft.AppliedIndex() >= commit
}
