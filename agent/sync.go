package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/transfer"
)

func (a *Agent) handleSync(w http.ResponseWriter, r *http.Request) {
	var req api.NodeSyncRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := a.syncBlobs(r.Context(), req); err != nil {
		a.log.Warn("sync failed", "err", err)
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// spareLater puts memory for n entries aside for the next re-sync of
// dest, when no spent record can lend it: soon, but not while this sync's
// peers still work (nodes of a machine share its cores), and only if no
// record became the spare meanwhile.
func (a *Agent) spareLater(dest string, n int) {
	time.AfterFunc(spareDelay, func() {
		r := transfer.SpareRecord(n)
		a.syncMu.Lock()
		defer a.syncMu.Unlock()
		if a.spares[dest] == nil {
			a.keepSpare(dest, syncedTree{rec: r, built: true})
		}
	})
}

// spareDelay is how long after a sync spareLater waits.
const spareDelay = time.Second

// maxFreshSpare bounds the trees, in entries, for which a node keeps
// memory aside for the next re-sync when no spent record can lend it
// (about 120 bytes an entry).
const maxFreshSpare = 100_000

// syncBlobs makes sure ~/sky_workdir exists, then brings each manifest's
// tree into place, parents before children (so a file mount inside the
// workdir survives the workdir's update).
func (a *Agent) syncBlobs(ctx context.Context, req api.NodeSyncRequest) error {
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	blobs := req.Blobs
	workdir := filepath.Join(a.cfg.Home, "sky_workdir")
	if err := os.MkdirAll(workdir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", workdir, err)
	}
	type item struct {
		ref  api.BlobRef
		dest string
		// private is the absolute destination served from the node's
		// own copy at dest (AgentConfig.PrivateMounts).
		private string
	}
	items := make([]item, 0, len(blobs))
	for _, b := range blobs {
		dest, private, err := a.blobDest(b)
		if err != nil {
			return err
		}
		if _, err := transfer.ParseChunkID(b.Digest); err != nil {
			return fmt.Errorf("manifest for %s: %w", b.Dest, err)
		}
		items = append(items, item{ref: b, dest: dest, private: private})
	}
	slices.SortStableFunc(items, func(x, y item) int {
		return strings.Count(x.dest, string(filepath.Separator)) - strings.Count(y.dest, string(filepath.Separator))
	})
	keep := make(map[transfer.ChunkID]bool)
	for _, it := range items {
		if err := a.syncManifest(ctx, req, it.ref, it.dest, keep); err != nil {
			return err
		}
		if it.private != "" {
			if err := a.addPrivateMount(it.private, it.ref.File); err != nil {
				return fmt.Errorf("file mount %s: %w", it.private, err)
			}
		}
	}
	if len(items) > 0 {
		a.pruneChunks(ctx, keep)
	}
	return a.putMounts(ctx, req.Mounts, req.MountEnv)
}

// pruneChunks bounds a node's own chunk store after a sync: it keeps the
// packs holding a chunk of the trees just synced (keep), and removes the
// rest, what earlier versions of the code needed. A store shared with the
// coordinator (AgentConfig.ChunkDir) is the coordinator's to keep. A peer
// still fetching an older version from this node finds a chunk gone and
// asks another source.
func (a *Agent) pruneChunks(ctx context.Context, keep map[transfer.ChunkID]bool) {
	if a.cfg.ChunkDir != "" {
		return
	}
	n, err := a.chunks.Retain(ctx, func(id transfer.ChunkID) bool { return keep[id] })
	if err != nil {
		a.log.Warn("prune the chunk store", "err", err)
		return
	}
	if n > 0 {
		a.log.Info("pruned the chunk store", "chunks", n)
	}
}

// resolveDest maps a BlobRef's Dest to a path on this node: "~" and "~/x"
// under home, a relative path under ~/sky_workdir, an absolute path as it
// is. A tree may not replace the home directory or "/".
func resolveDest(home, dest string, file bool) (string, error) {
	var p string
	switch {
	case dest == "":
		return "", errors.New("blob destination is empty")
	case dest == "~" || strings.HasPrefix(dest, "~/"):
		p = filepath.Join(home, strings.TrimPrefix(dest[1:], "/"))
	case strings.HasPrefix(dest, "~"):
		return "", fmt.Errorf("blob destination %q: ~user paths are not supported", dest)
	case filepath.IsAbs(dest):
		p = filepath.Clean(dest)
	default:
		p = filepath.Join(home, "sky_workdir", dest)
	}
	if p == filepath.Clean(home) || p == "/" {
		return "", fmt.Errorf("blob destination %q would replace %s", dest, p)
	}
	return p, nil
}

// chunkSource is another agent's chunk store, or the coordinator's.
func (a *Agent) chunkSource(base string) *transfer.HTTPStore {
	return transfer.HTTPSource(strings.TrimRight(base, "/")+"/v1/chunks", a.chunkClient)
}

// coordinatorSources are the chunk stores of every coordinator replica.
func (a *Agent) coordinatorSources() []transfer.Source {
	var out []transfer.Source
	for _, c := range a.coordinators() {
		out = append(out, a.chunkSource(c))
	}
	return out
}

// syncManifest brings one tree (or file) into place at dest: it builds
// the manifest from the head's delta or fetches it, works out which
// chunks dest lacks, pulls them from the origins and peers (all of them,
// when this node is an origin for others), and applies the manifest
// atomically. Files jobs wrote there are kept, as SkyPilot's rsync (no
// --delete) keeps them. The manifest's chunks, and the manifest itself,
// are added to keep.
func (a *Agent) syncManifest(ctx context.Context, req api.NodeSyncRequest, ref api.BlobRef, dest string, keep map[transfer.ChunkID]bool) (err error) {
	start := time.Now()
	id, err := transfer.ParseChunkID(ref.Digest)
	if err != nil {
		return err
	}
	var origins []transfer.Source
	for _, o := range req.Origins {
		origins = append(origins, a.chunkSource("http://"+o))
	}
	origins = append(origins, a.coordinatorSources()...)
	spare := a.takeSpare(dest) // lent to this sync: its memory is overwritten
	m, last, delta := a.fromDelta(req, ref, id, dest, spare)
	prev := last.rec
	if delta == nil {
		if m, err = a.manifest(ctx, id, origins...); err != nil {
			return fmt.Errorf("manifest %.12s for %s: %w", ref.Digest, ref.Dest, err)
		}
	}
	// What this node synced there is known again only once this sync
	// succeeds.
	a.setSynced(dest, id, nil, false)
	var rec *transfer.Record
	built := false // rec's entries are m's, built from the delta (syncedTree.built)
	defer func() {
		if err == nil {
			a.setSynced(dest, id, rec, built)
			if last.rec != nil {
				a.keepSpare(dest, last)
			}
			if a.spares[dest] == nil && len(m.Entries) <= maxFreshSpare {
				a.spareLater(dest, len(m.Entries)+64)
			}
		}
	}()
	if a.cfg.ChunkDir == "" { // what pruneChunks keeps
		keep[id] = true
		for _, c := range m.Chunks() {
			keep[c.ID] = true
		}
	}
	tManifest := time.Now()
	sum := sha256.Sum256([]byte(dest))
	opts := transfer.ApplyOptions{StateFile: filepath.Join(a.cfg.Home, ".sky", "sync-state", hex.EncodeToString(sum[:12])),
		View: a.viewOf(dest, len(m.Entries)), Record: prev, Validated: true, // decoded, or from a delta: validated
		Changes: delta, Reuse: spare}
	tView := time.Now()
	if err := os.MkdirAll(filepath.Dir(opts.StateFile), 0o700); err != nil {
		return err
	}
	f := transfer.Fetcher{Store: a.chunks, Origins: origins, Parallel: 8}
	if len(req.Peers) > 1 {
		for i, p := range req.Peers {
			if i == req.Self {
				f.Peers = append(f.Peers, nil)
				continue
			}
			f.Peers = append(f.Peers, a.chunkSource("http://"+p))
		}
		f.Self = req.Self
	}
	var fetched transfer.FetchStats
	fetch := func(ids []transfer.ChunkRef) error {
		st, err := f.Fetch(ctx, ids)
		fetched.Fetched, fetched.Bytes = fetched.Fetched+st.Fetched, fetched.Bytes+st.Bytes
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		return nil
	}
	// Without origins, and with a store of its own, this node is the
	// origin of the others: it holds every chunk, not only those its own
	// copy lacks. (Nodes sharing one store read it directly; the head's
	// prefetch filled it.)
	origin := len(req.Origins) == 0 && a.cfg.ChunkDir == ""
	if origin {
		if err := fetch(m.Chunks()); err != nil {
			return fmt.Errorf("sync %s: %w", ref.Dest, err)
		}
	}
	// A new destination on a machine that keeps one copy of each tree
	// for its nodes is a view of that copy: neither a plan nor chunks
	// (but the chunks the copy is written from, by the node that writes
	// it) are needed.
	seeded, seedRec, err := a.seedTree(ctx, id, m, dest, opts.StateFile, func() error { return fetch(m.Chunks()) })
	if err != nil {
		return fmt.Errorf("sync %s: %w", ref.Dest, err)
	}
	if seeded {
		rec = seedRec
		a.log.Info("synced as a copy-on-write view of the machine's copy", "dest", ref.Dest, "files", len(m.Entries),
			"fetched", fetched.Fetched, "manifest", tManifest.Sub(start), "mount", time.Since(tView))
		return nil
	}
	plan, err := transfer.PlanApply(m, dest, opts)
	if err != nil {
		return fmt.Errorf("sync %s: %w", ref.Dest, err)
	}
	tPlan := time.Now()
	if !origin {
		if err := fetch(plan.Chunks()); err != nil {
			return fmt.Errorf("sync %s: %w", ref.Dest, err)
		}
	}
	tFetch := time.Now()
	st, err := plan.Apply(ctx, a.chunks)
	if err != nil {
		return fmt.Errorf("sync %s: %w", ref.Dest, err)
	}
	rec, built = plan.Record(), delta != nil
	a.log.Info("synced", "dest", ref.Dest, "files", st.Files, "written", st.Written, "written_bytes", st.WrittenBytes,
		"fetched", fetched.Fetched, "fetched_bytes", fetched.Bytes, "view", opts.View != nil, "delta", delta != nil, "kept_record", prev != nil,
		"manifest", tManifest.Sub(start), "layer", tView.Sub(tManifest), "plan", tPlan.Sub(tView),
		"fetch", tFetch.Sub(tPlan), "apply", time.Since(tFetch))
	return nil
}

// prefetch brings the chunks of the blobs' manifests into the node's
// store from the coordinator: the head does it first when the nodes share
// its store, and then none of them needs to fetch. Where the head synced
// an earlier manifest (diffs), it brings those of the files that changed
// since; a node that must put back an unchanged file a job altered
// fetches what it lacks itself.
func (a *Agent) prefetch(ctx context.Context, blobs []api.BlobRef, diffs map[string]headDiff) error {
	origins := a.coordinatorSources()
	for _, b := range blobs {
		id, err := transfer.ParseChunkID(b.Digest)
		if err != nil {
			return fmt.Errorf("manifest for %s: %w", b.Dest, err)
		}
		need := &transfer.Manifest{}
		if hd, ok := diffs[b.Digest]; ok {
			need.Entries = hd.d.Changed
		} else if need, err = a.manifest(ctx, id, origins...); err != nil {
			return fmt.Errorf("manifest %.12s for %s: %w", b.Digest, b.Dest, err)
		}
		f := transfer.Fetcher{Store: a.chunks, Origins: origins, Parallel: 8}
		if _, err := f.Fetch(ctx, need.Chunks()); err != nil {
			return fmt.Errorf("sync %s: fetch: %w", b.Dest, err)
		}
	}
	return nil
}

// responseError describes a non-2xx answer: its status and the message
// of its api.Error body, or the start of the body.
func responseError(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096)) // best effort: for the message only
	msg := strings.TrimSpace(string(b))
	var e api.Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		return resp.Status
	}
	return resp.Status + ": " + msg
}
