package transfer

import (
	"context"
	"io"
	"os"
	"sync"
)

// BuildAndUpload is BuildManifest then Upload, overlapped: chunks go to
// dst while the rest of the tree is still being read, so the upload costs
// little more than the read where the link keeps up. What the overlap did
// not send (a batch that failed, say) the closing Upload sends, with the
// manifest last, as Upload always does; a store holding the manifest
// holds every chunk of it.
func BuildAndUpload(ctx context.Context, root string, bopts BuildOptions, dst ChunkStore, uopts UploadOptions) (*Tree, ChunkID, UploadStats, error) {
	return buildAndUpload(ctx, func(o BuildOptions) (*Tree, error) { return BuildManifest(ctx, root, o) }, bopts, dst, uopts)
}

// RebuildAndUpload is Rebuild then Upload, overlapped as BuildAndUpload
// overlaps them.
func RebuildAndUpload(ctx context.Context, s *Snapshot, changed []string, bopts BuildOptions, dst ChunkStore, uopts UploadOptions) (*Tree, ChunkID, UploadStats, error) {
	return buildAndUpload(ctx, func(o BuildOptions) (*Tree, error) { return Rebuild(ctx, s, changed, o) }, bopts, dst, uopts)
}

func buildAndUpload(ctx context.Context, build func(BuildOptions) (*Tree, error), bopts BuildOptions, dst ChunkStore, uopts UploadOptions) (*Tree, ChunkID, UploadStats, error) {
	var early headStart
	if ds, ok := dst.(*DiskStore); ok {
		sink := newStoreSink(ds)
		bopts.onChunkData = sink.put
		early = sink
	} else {
		es := newEarlySender(ctx, dst, uopts)
		bopts.onChunks = es.add
		early = es
	}
	tree, err := build(bopts)
	early.close()
	if err != nil {
		return nil, ChunkID{}, UploadStats{}, err
	}
	chunks, bytes := early.sent()
	final := uopts
	if uopts.Progress != nil {
		// One "upload" operation for the caller: the closing Upload's
		// figures come on top of the early ones.
		final.Progress = func(p Progress) {
			p.Bytes += bytes
			p.TotalBytes += bytes
			p.Files += chunks
			p.TotalFiles += chunks
			uopts.Progress(p)
		}
	}
	data, err := tree.Manifest.Encode()
	if err != nil {
		return nil, ChunkID{}, UploadStats{}, err
	}
	tree.encoded = data // for its Snapshot
	id, st, err := uploadEncoded(ctx, &tree.Manifest, data, tree, dst, final)
	st.Chunks += chunks
	st.Bytes += bytes
	return tree, id, st, err
}

// headStart sends chunks while BuildManifest still reads the tree.
type headStart interface {
	close()             // waits until what it was given is sent or given up on
	sent() (int, int64) // chunks and bytes sent, once closed
}

// earlyChunk is a chunk to send before the manifest is done: where its
// bytes are.
type earlyChunk struct {
	ref ChunkRef
	abs string
	off int64
}

// earlySender sends chunks in batches as BuildManifest finds them. It is
// only a head start: a failure stops it, and the closing Upload sends
// whatever is still missing.
type earlySender struct {
	ctx      context.Context
	dst      ChunkStore
	in       chan []earlyChunk
	done     chan struct{}
	sem      chan struct{}
	wg       sync.WaitGroup
	m        *meter
	mu       sync.Mutex
	failed   bool
	chunks   int   // sent, once close returned
	bytes    int64 // sent, once close returned
	seen     map[ChunkID]bool
	pending  []earlyChunk
	pendSize int64
	flushed  bool // a batch was sent before close
}

const (
	earlyBatchChunks = 256
	earlyBatchBytes  = 8 << 20
)

func newEarlySender(ctx context.Context, dst ChunkStore, opts UploadOptions) *earlySender {
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = 4
	}
	es := &earlySender{ctx: ctx, dst: dst, in: make(chan []earlyChunk, 64), done: make(chan struct{}),
		sem: make(chan struct{}, parallel), seen: map[ChunkID]bool{}, m: newMeter(opts.Progress, "upload", 0, 0)}
	go es.run()
	return es
}

// add queues a file's chunks (BuildOptions.onChunks).
func (es *earlySender) add(abs string, chunks []ChunkRef) {
	cs := make([]earlyChunk, len(chunks))
	var off int64
	for i, c := range chunks {
		cs[i] = earlyChunk{ref: c, abs: abs, off: off}
		off += c.Size
	}
	select {
	case es.in <- cs:
	case <-es.ctx.Done():
	}
}

// close waits until everything queued was sent (or given up on).
func (es *earlySender) close() {
	close(es.in)
	<-es.done
}

func (es *earlySender) sent() (int, int64) { return es.chunks, es.bytes }

func (es *earlySender) run() {
	defer close(es.done)
	for cs := range es.in {
		for _, c := range cs {
			if es.seen[c.ref.ID] {
				continue
			}
			es.seen[c.ref.ID] = true
			es.pending = append(es.pending, c)
			es.pendSize += c.ref.Size
			if len(es.pending) >= earlyBatchChunks || es.pendSize >= earlyBatchBytes {
				es.flush()
				es.flushed = true
			}
		}
	}
	// What never filled a batch (a re-sync's few changed chunks) goes
	// with the closing upload, in its round trips rather than two more.
	if es.flushed {
		es.flush()
	}
	es.wg.Wait()
}

// flush sends the pending batch in the background.
func (es *earlySender) flush() {
	batch := es.pending
	es.pending, es.pendSize = nil, 0
	if len(batch) == 0 || es.stopped() {
		return
	}
	es.sem <- struct{}{}
	es.wg.Go(func() {
		defer func() { <-es.sem }()
		if err := es.send(batch); err != nil {
			es.mu.Lock()
			es.failed = true
			es.mu.Unlock()
		}
	})
}

func (es *earlySender) stopped() bool {
	es.mu.Lock()
	defer es.mu.Unlock()
	return es.failed || es.ctx.Err() != nil
}

// send puts those of batch that dst lacks.
func (es *earlySender) send(batch []earlyChunk) error {
	ids := make([]ChunkID, len(batch))
	for i, c := range batch {
		ids[i] = c.ref.ID
	}
	missing, err := es.dst.Missing(es.ctx, ids)
	if err != nil || len(missing) == 0 {
		return err
	}
	lacks := make(map[ChunkID]bool, len(missing))
	for _, id := range missing {
		lacks[id] = true
	}
	where := make(map[ChunkID]earlyChunk, len(missing))
	var refs []ChunkRef
	var size int64
	for _, c := range batch {
		if lacks[c.ref.ID] {
			where[c.ref.ID] = c
			refs = append(refs, c.ref)
			size += c.ref.Size
		}
	}
	es.m.grow(len(refs), size)
	open := func(id ChunkID) (io.ReadCloser, error) {
		c := where[id]
		f, err := openFile(c.abs, os.O_RDONLY, 0)
		if err != nil {
			return nil, err
		}
		return sectionReadCloser{io.NewSectionReader(f, c.off, c.ref.Size), f}, nil
	}
	if err := putBatch(es.ctx, refs, open, es.dst); err != nil {
		return err
	}
	es.mu.Lock()
	es.chunks += len(refs)
	es.bytes += size
	es.mu.Unlock()
	es.m.add(len(refs), size)
	return nil
}

// sectionReadCloser reads a section of a file and closes the file.
type sectionReadCloser struct {
	*io.SectionReader
	f *os.File
}

func (s sectionReadCloser) Close() error { return s.f.Close() }
