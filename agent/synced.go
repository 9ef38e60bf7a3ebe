package agent

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/transfer"
)

// A node remembers, in memory, what it last synced to each destination:
// the manifest's id and Apply's record of it. The next sync there then
// neither reads the state file nor, when the head sends a delta from that
// manifest, fetches and decodes the new manifest: a re-sync after a small
// change costs in proportion to the change. After a restart, or a sync
// that failed, the node goes by its state file and fetches the manifest,
// as on a first sync.

// syncedTree is what a node last synced to a destination.
type syncedTree struct {
	id  transfer.ChunkID
	rec *transfer.Record
	// built: the record's entries are those of a manifest this node
	// built from a delta, which nothing else holds. Once replaced, such
	// a record is a spare: the next sync there builds its manifest, and
	// keeps its file records, in the spare's memory. A fresh 5,000-entry
	// manifest cost a re-sync more in page faults and clearing than all
	// the rest of its work.
	built bool
}

// maxInlineDelta bounds a delta sent inside a sync request; a bigger
// change is synced from the manifest.
const maxInlineDelta = 1 << 20

// lastSynced returns what this node last synced to dest.
func (a *Agent) lastSynced(dest string) (syncedTree, bool) {
	a.treesMu.Lock()
	defer a.treesMu.Unlock()
	t, ok := a.synced[dest]
	return t, ok
}

// setSynced records what this node synced to dest; a nil record forgets
// it (the next sync there goes by the state file). built says the
// record's entries are a manifest this node built from a delta
// (syncedTree.built).
func (a *Agent) setSynced(dest string, id transfer.ChunkID, rec *transfer.Record, built bool) {
	a.treesMu.Lock()
	defer a.treesMu.Unlock()
	if rec == nil {
		delete(a.synced, dest)
		return
	}
	if a.synced == nil {
		a.synced = make(map[string]syncedTree)
	}
	a.synced[dest] = syncedTree{id: id, rec: rec, built: built}
}

// takeSpare returns, and forgets, the spare record of dest (see
// syncedTree.built); nil when there is none. Call it with syncMu held.
func (a *Agent) takeSpare(dest string) *transfer.Record {
	r := a.spares[dest]
	delete(a.spares, dest)
	return r
}

// keepSpare keeps the record of dest that a sync replaced, when it is a
// spare. Call it with syncMu held: only syncs, which hold it, and the
// head's diffs, which take it, read records.
func (a *Agent) keepSpare(dest string, replaced syncedTree) {
	if !replaced.built {
		return
	}
	if a.spares == nil {
		a.spares = make(map[string]*transfer.Record)
	}
	a.spares[dest] = replaced.rec
}

// manifest returns manifest id, decoded, from the node's recent ones or
// else from its store or the sources (FetchManifest). The result is
// shared: do not change it.
func (a *Agent) manifest(ctx context.Context, id transfer.ChunkID, sources ...transfer.Source) (*transfer.Manifest, error) {
	a.treesMu.Lock()
	m := a.manifests[id]
	a.treesMu.Unlock()
	if m != nil {
		return m, nil
	}
	fetched, err := transfer.FetchManifest(ctx, id, a.chunks, sources...)
	if err != nil {
		return nil, err
	}
	a.treesMu.Lock()
	defer a.treesMu.Unlock()
	// A sync needs one manifest a few times (the head's prefetch, its
	// deltas, its own sync); a big tree's takes tens of MB: keep two.
	if a.manifests == nil || len(a.manifests) >= 2 {
		a.manifests = make(map[transfer.ChunkID]*transfer.Manifest)
	}
	a.manifests[id] = &fetched
	return &fetched, nil
}

// fromDelta builds manifest id from the delta the head sent, when this
// node last synced dest from the delta's base, in spare's memory (nil for
// none); it returns the delta too (for ApplyOptions.Changes), and d is nil
// otherwise. last is what this node last synced there, when found.
func (a *Agent) fromDelta(req api.NodeSyncRequest, ref api.BlobRef, id transfer.ChunkID, dest string, spare *transfer.Record) (m *transfer.Manifest, last syncedTree, d *transfer.Delta) {
	last, found := a.lastSynced(dest)
	if !found {
		return nil, last, nil
	}
	data := req.Deltas[ref.Digest]
	if data == nil {
		return nil, last, nil
	}
	decoded, err := transfer.DecodeDelta(data)
	if err != nil || decoded.Base != last.id || decoded.Result != id {
		return nil, last, nil
	}
	var buf []transfer.Entry
	if spare != nil {
		buf = spare.Entries()
	}
	built, err := decoded.ApplyInto(last.rec.Entries(), buf)
	if err != nil {
		a.log.Warn("a manifest delta from the head did not apply; fetching the manifest", "dest", ref.Dest, "err", err)
		return nil, last, nil
	}
	return &built, last, &decoded
}

// blobDest is where blob b goes on this node, and, for a file mount
// served from the node's own copy (AgentConfig.PrivateMounts), the path
// the job sees it at.
func (a *Agent) blobDest(b api.BlobRef) (dest, private string, err error) {
	dest, err = resolveDest(a.cfg.Home, b.Dest, b.File)
	if err != nil {
		return "", "", err
	}
	if a.cfg.PrivateMounts && filepath.IsAbs(b.Dest) {
		return a.privatePath(dest), dest, nil
	}
	return dest, "", nil
}

// headDiff is the difference from what the head synced to a blob's
// destination before to the blob's manifest.
type headDiff struct {
	d       transfer.Delta
	entries int // in the new manifest
}

// diffs returns, by manifest digest, the difference of each blob's
// manifest from the one the head synced there before (bases, taken before
// its own sync): the client's (BlobRef.Delta) when it is from that one,
// or else worked out here, fetching the manifest from sources when the
// head has not decoded it yet. A first sync there, or a manifest that
// cannot be had, gets none.
func (a *Agent) diffs(ctx context.Context, blobs []api.BlobRef, bases map[string]syncedTree, sources ...transfer.Source) map[string]headDiff {
	out := make(map[string]headDiff)
	for _, b := range blobs {
		dest, _, err := a.blobDest(b)
		base, ok := bases[dest]
		if err != nil || !ok {
			continue
		}
		id, err := transfer.ParseChunkID(b.Digest)
		if err != nil || id == base.id {
			continue
		}
		if d, ok := a.clientDelta(b, base, id, a.spares[dest]); ok {
			out[b.Digest] = d
			continue
		}
		m, err := a.manifest(ctx, id, sources...)
		if err != nil {
			continue
		}
		prev := transfer.Manifest{Version: transfer.ManifestVersion, Entries: base.rec.Entries()}
		out[b.Digest] = headDiff{d: transfer.Diff(&prev, base.id, m, id), entries: len(m.Entries)}
	}
	return out
}

// clientDelta returns the client's delta for blob b (BlobRef.Delta) when
// it leads from base, what the head synced there, to the blob's manifest
// (id): the manifest it builds must have that id, which costs its encoding
// and hash, not its fetch. A client that got it wrong (a bug) only costs
// that fetch: the nodes never take a tree for another. The manifest is
// built in spare's memory, when there is a spare (syncedTree.built), and
// dropped once checked: the head's own sync there then takes the spare.
// Call it with syncMu held.
func (a *Agent) clientDelta(b api.BlobRef, base syncedTree, id transfer.ChunkID, spare *transfer.Record) (headDiff, bool) {
	if len(b.Delta) == 0 {
		return headDiff{}, false
	}
	d, err := transfer.DecodeDelta(b.Delta)
	if err != nil || d.Base != base.id || d.Result != id {
		return headDiff{}, false
	}
	var buf []transfer.Entry
	if spare != nil {
		buf = spare.Entries()
	}
	m, err := d.ApplyInto(base.rec.Entries(), buf)
	if err == nil {
		var got transfer.ChunkID
		if got, err = m.ID(); err == nil && got != id {
			err = fmt.Errorf("it leads to manifest %.12s", got)
		}
	}
	if err != nil {
		a.log.Warn("the client's manifest delta does not lead to its manifest; fetching the manifest", "dest", b.Dest, "err", err)
		return headDiff{}, false
	}
	return headDiff{d: d, entries: len(m.Entries)}, true
}

// inlineDeltas encodes the diffs small enough to send the workers inside their
// sync requests; a bigger change is synced from the manifest.
func inlineDeltas(diffs map[string]headDiff) map[string][]byte {
	var out map[string][]byte
	for digest, hd := range diffs {
		if len(hd.d.Changed)+len(hd.d.Removed) > hd.entries/2 {
			continue
		}
		enc := hd.d.Encode()
		if len(enc) > maxInlineDelta {
			continue
		}
		if out == nil {
			out = make(map[string][]byte)
		}
		out[digest] = enc
	}
	return out
}

// syncedBases returns what this node last synced to each blob's
// destination.
func (a *Agent) syncedBases(blobs []api.BlobRef) map[string]syncedTree {
	out := make(map[string]syncedTree)
	for _, b := range blobs {
		dest, _, err := a.blobDest(b)
		if err != nil {
			continue
		}
		if t, ok := a.lastSynced(dest); ok {
			out[dest] = t
		}
	}
	return out
}
