package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
)

// UploadOptions tunes Upload.
type UploadOptions struct {
	// Parallel is how many requests run at once; zero means 4.
	Parallel int
	// Progress receives "upload" progress: chunks and bytes sent.
	Progress ProgressFunc
}

// UploadStats counts what Upload sent.
type UploadStats struct {
	Chunks        int   // chunks sent
	Bytes         int64 // their bytes
	ManifestBytes int   // size of the encoded manifest (sent unless present)
}

// Upload sends dst the chunks of m it lacks, read from src (a Tree on the
// client), then the manifest itself, stored as a chunk under its id, which
// it returns. The manifest goes last, so a store that holds a manifest
// holds all its chunks.
func Upload(ctx context.Context, m *Manifest, src Source, dst ChunkStore, opts UploadOptions) (ChunkID, UploadStats, error) {
	data, err := m.Encode()
	if err != nil {
		return ChunkID{}, UploadStats{}, err
	}
	return uploadEncoded(ctx, m, data, src, dst, opts)
}

// uploadEncoded is Upload of m, whose encoding is data.
func uploadEncoded(ctx context.Context, m *Manifest, data []byte, src Source, dst ChunkStore, opts UploadOptions) (ChunkID, UploadStats, error) {
	var st UploadStats
	mid := HashChunk(data)
	st.ManifestBytes = len(data)
	// Every chunk, a chunk two files share as often as they do: the
	// store answers for each, and a map to drop the repeats first costs
	// more than the repeats.
	n := 0
	for i := range m.Entries {
		n += len(m.Entries[i].Chunks)
	}
	ids := make([]ChunkID, 0, n+1)
	for i := range m.Entries {
		for _, c := range m.Entries[i].Chunks {
			ids = append(ids, c.ID)
		}
	}
	ids = append(ids, mid)
	missing, err := dst.Missing(ctx, ids)
	if err != nil {
		return mid, st, fmt.Errorf("upload: %w", err)
	}
	putManifest := slices.Contains(missing, mid)
	if len(missing) == 0 {
		return mid, st, nil
	}
	lacks := make(map[ChunkID]bool, len(missing))
	for _, id := range missing {
		lacks[id] = true
	}
	delete(lacks, mid)
	var send []ChunkRef
	var total int64
	for i := range m.Entries {
		for _, r := range m.Entries[i].Chunks {
			if lacks[r.ID] {
				delete(lacks, r.ID) // sent once
				send = append(send, r)
				total += r.Size
			}
		}
	}
	meter := newMeter(opts.Progress, "upload", len(send), total)
	if putManifest && len(send) < maxBatchChunks && total <= maxBatchBytes {
		// A few chunks (a re-sync's) go with the manifest in one batch:
		// one round trip, and the store commits them at once, so it
		// still never holds the manifest without its chunks.
		refs := append(send, ChunkRef{ID: mid, Size: int64(len(data))})
		open := func(id ChunkID) (io.ReadCloser, error) {
			if id == mid {
				return io.NopCloser(bytes.NewReader(data)), nil
			}
			return src.Get(ctx, id)
		}
		if err := putBatch(ctx, refs, open, dst); err != nil {
			return mid, st, fmt.Errorf("upload: %w", err)
		}
		meter.add(len(send), total)
		meter.done()
		st.Chunks, st.Bytes = len(send), total
		return mid, st, nil
	}
	if err := putChunks(ctx, send, src, dst, opts.Parallel, meter); err != nil {
		return mid, st, err
	}
	st.Chunks, st.Bytes = len(send), total
	if putManifest {
		if err := dst.Put(ctx, mid, bytes.NewReader(data)); err != nil {
			return mid, st, fmt.Errorf("upload manifest %s: %w", mid, err)
		}
	}
	meter.done()
	return mid, st, nil
}

// putChunks copies refs from src to dst, several batches at once.
func putChunks(ctx context.Context, refs []ChunkRef, src Source, dst ChunkStore, parallel int, m *meter) error {
	if len(refs) == 0 {
		return nil
	}
	if parallel <= 0 {
		parallel = 4
	}
	var total int64
	for _, r := range refs {
		total += r.Size
	}
	limit := min(int64(maxBatchBytes), max(64<<10, total/int64(parallel)))
	var batches [][]ChunkRef
	var cur []ChunkRef
	var curBytes int64
	for _, r := range refs {
		if len(cur) > 0 && (len(cur) == maxBatchChunks || curBytes+r.Size > limit) {
			batches = append(batches, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, r)
		curBytes += r.Size
	}
	batches = append(batches, cur)

	err := eachParallel(ctx, parallel, len(batches), func(ctx context.Context, i int) error {
		b := batches[i]
		open := func(id ChunkID) (io.ReadCloser, error) { return src.Get(ctx, id) }
		if err := putBatch(ctx, b, open, dst); err != nil {
			return err
		}
		var n int64
		for _, r := range b {
			n += r.Size
		}
		m.add(len(b), n)
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return fmt.Errorf("upload: %w", context.Cause(ctx))
		}
		return fmt.Errorf("upload: %w", err)
	}
	return nil
}

func putBatch(ctx context.Context, refs []ChunkRef, open func(ChunkID) (io.ReadCloser, error), dst ChunkStore) error {
	if bp, ok := dst.(BatchPutter); ok && len(refs) > 1 {
		return bp.PutMany(ctx, refs, open)
	}
	if bs, ok := dst.(batchStarter); ok && len(refs) > 1 {
		b := bs.newBatch()
		for _, r := range refs {
			rc, err := open(r.ID)
			if err != nil {
				b.Abort()
				return err
			}
			err = b.Put(ctx, r.ID, rc)
			rc.Close() // read only
			if err != nil {
				b.Abort()
				return err
			}
		}
		return b.Commit()
	}
	for _, r := range refs {
		rc, err := open(r.ID)
		if err != nil {
			return err
		}
		err = dst.Put(ctx, r.ID, rc)
		rc.Close() // read only
		if err != nil {
			return err
		}
	}
	return nil
}

// FetchManifest returns the manifest stored under id, fetching it into
// store from the first of sources that has it when store lacks it.
func FetchManifest(ctx context.Context, id ChunkID, store ChunkStore, sources ...Source) (Manifest, error) {
	missing, err := store.Missing(ctx, []ChunkID{id})
	if err != nil {
		return Manifest{}, fmt.Errorf("fetch manifest %s: %w", id, err)
	}
	if len(missing) > 0 {
		var tried []string
		for _, s := range sources {
			err := copyChunk(ctx, id, s, store)
			if err == nil {
				tried = nil
				break
			}
			tried = append(tried, sourceName(s)+": "+err.Error())
		}
		if len(tried) > 0 || len(sources) == 0 {
			return Manifest{}, fmt.Errorf("fetch manifest %s: %w (%v)", id, ErrNoSource, tried)
		}
	}
	rc, err := store.Get(ctx, id)
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s: %w", id, err)
	}
	defer rc.Close() // read only
	data, err := readAllLimit(rc, 1<<30)
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s: %w", id, err)
	}
	m, err := DecodeManifest(data)
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s: %w", id, err)
	}
	return m, nil
}

func copyChunk(ctx context.Context, id ChunkID, src Source, dst ChunkStore) error {
	rc, err := src.Get(ctx, id)
	if err != nil {
		return err
	}
	defer rc.Close() // read only
	return dst.Put(ctx, id, rc)
}
