package transfer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"unsafe"
)

// The chunk protocol, relative to where ChunkHandler is mounted:
//
//	GET  /<id>      the chunk's bytes; 404 when the store lacks it
//	POST /missing   body: ids, 32 raw bytes each; answer: those the store lacks
//	POST /get       body: ids; answer: a frame per chunk the store holds, then an end frame
//	PUT  /<id>      body: the chunk (HandlerOptions.AllowPut); 204, or 400 when it does not hash to id
//	POST /put       body: frames, then an end frame (AllowPut); 204, or 400 naming the bad chunk
//
// A frame is the 32-byte id, the length as 8 bytes big-endian, then the
// bytes. The end frame is 40 zero bytes; a stream cut before it is an
// error, so a dying peer is not taken for one that lacks chunks.
const (
	frameHeaderSize = 40
	maxIDsPerCall   = 1 << 20
)

// HandlerOptions tunes ChunkHandler.
type HandlerOptions struct {
	// AllowPut lets clients store chunks. A node's peer endpoint serves
	// reads only; the coordinator's takes uploads.
	AllowPut bool
	// MaxPutSize bounds one chunk taken in; zero means 64 MiB (manifests
	// travel as chunks too, and can be larger than MaxChunkSize).
	MaxPutSize int64
}

// ChunkHandler serves store over HTTP with the protocol above. Mount it
// under a prefix with http.StripPrefix, e.g.
//
//	mux.Handle("/v1/chunks/", http.StripPrefix("/v1/chunks", transfer.ChunkHandler(store, opts)))
//
// and wrap it in the server's authentication.
func ChunkHandler(store ChunkStore, opts HandlerOptions) http.Handler {
	if opts.MaxPutSize <= 0 {
		opts.MaxPutSize = 64 << 20
	}
	h := &chunkHandler{store: store, opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{id}", h.get)
	mux.HandleFunc("POST /missing", h.missing)
	mux.HandleFunc("POST /get", h.getMany)
	if opts.AllowPut {
		mux.HandleFunc("PUT /{id}", h.put)
		mux.HandleFunc("POST /put", h.putMany)
	}
	return mux
}

type chunkHandler struct {
	store ChunkStore
	opts  HandlerOptions
}

func (h *chunkHandler) get(w http.ResponseWriter, r *http.Request) {
	id, err := ParseChunkID(r.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc, err := h.store.Get(r.Context(), id)
	if err != nil {
		httpStoreError(w, err)
		return
	}
	defer rc.Close() // read only
	if size, ok := readerSize(rc); ok {
		w.Header().Set("Content-Length", fmt.Sprint(size))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, rc); err != nil {
		panic(http.ErrAbortHandler) // the client must not take a short body for the chunk
	}
}

func (h *chunkHandler) missing(w http.ResponseWriter, r *http.Request) {
	ids, release, err := pooledIDs(r.Body)
	defer release()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	missing, err := h.store.Missing(r.Context(), ids)
	if err != nil {
		httpStoreError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	b := make([]byte, 0, len(missing)*32)
	for _, id := range missing {
		b = append(b, id[:]...)
	}
	_, _ = w.Write(b) // the client sees a short answer
}

func (h *chunkHandler) getMany(w http.ResponseWriter, r *http.Request) {
	ids, release, err := pooledIDs(r.Body)
	defer release()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	// Chunks at hand go first; then those on their way in, which Get
	// waits for.
	later, err := h.store.Missing(ctx, ids)
	if err != nil {
		httpStoreError(w, err)
		return
	}
	skip := make(map[ChunkID]bool, len(later))
	for _, id := range later {
		skip[id] = true
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	bw := bufio.NewWriterSize(w, 256<<10)
	send := func(id ChunkID) {
		rc, err := h.store.Get(ctx, id)
		if err != nil {
			if errors.Is(err, ErrChunkNotFound) {
				return
			}
			panic(http.ErrAbortHandler)
		}
		defer rc.Close() // read only
		if err := writeFrame(bw, id, rc); err != nil {
			panic(http.ErrAbortHandler)
		}
	}
	for _, id := range ids {
		if !skip[id] {
			send(id)
		}
	}
	if len(later) > 0 {
		// Let the client start on what it has while we wait.
		if err := bw.Flush(); err != nil {
			panic(http.ErrAbortHandler)
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		for _, id := range later {
			send(id)
		}
	}
	var end [frameHeaderSize]byte
	if _, err := bw.Write(end[:]); err != nil {
		panic(http.ErrAbortHandler)
	}
	if err := bw.Flush(); err != nil {
		panic(http.ErrAbortHandler)
	}
}

func (h *chunkHandler) put(w http.ResponseWriter, r *http.Request) {
	id, err := ParseChunkID(r.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body := http.MaxBytesReader(w, r.Body, h.opts.MaxPutSize)
	if err := h.store.Put(r.Context(), id, body); err != nil {
		httpStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *chunkHandler) putMany(w http.ResponseWriter, r *http.Request) {
	put := h.store.Put
	var batch chunkBatch
	if bs, ok := h.store.(batchStarter); ok {
		batch = bs.newBatch()
		put = batch.Put
	}
	code, err := h.readPutStream(r, put)
	if batch != nil {
		if err != nil {
			batch.Abort()
		} else if err = batch.Commit(); err != nil {
			code = 0
		}
	}
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case code == 0:
		httpStoreError(w, err)
	default:
		http.Error(w, err.Error(), code)
	}
}

// readPutStream stores the chunks of an upload stream with put. On error
// it returns the status to answer with, or 0 for a store error.
func (h *chunkHandler) readPutStream(r *http.Request, put func(context.Context, ChunkID, io.Reader) error) (int, error) {
	br, ok := putReaders.Get().(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(nil, putReaderSize)
	}
	br.Reset(r.Body)
	defer func() {
		br.Reset(nil)
		putReaders.Put(br)
	}()
	for {
		id, size, end, err := readFrameHeader(br)
		if err != nil {
			return http.StatusBadRequest, fmt.Errorf("read chunk stream: %w", err)
		}
		if end {
			return 0, nil
		}
		if size > h.opts.MaxPutSize {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("chunk %s: %d bytes, more than the %d this server takes", id, size, h.opts.MaxPutSize)
		}
		lr := &io.LimitedReader{R: br, N: size}
		if err := put(r.Context(), id, lr); err != nil {
			return 0, err
		}
		if _, err := io.Copy(io.Discard, lr); err != nil {
			return http.StatusBadRequest, fmt.Errorf("read chunk stream: %w", err)
		}
		if lr.N > 0 {
			return http.StatusBadRequest, fmt.Errorf("chunk %s: stream ended %d bytes short", id, lr.N)
		}
	}
}

// httpStoreError answers with the status that matches a store error.
func httpStoreError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, ErrChunkNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, ErrChunkCorrupt):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.As(err, &tooBig):
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// readIDs reads a body of raw 32-byte ids, into buf's memory while it
// lasts: straight into the ids, without a copy of the body.
func readIDs(r io.Reader, buf []ChunkID) ([]ChunkID, error) {
	ids := buf[:cap(buf)]
	if len(ids) == 0 {
		ids = make([]ChunkID, 64)
	}
	n := 0 // bytes read
	for {
		if n == len(ids)*len(ChunkID{}) {
			if len(ids) >= maxIDsPerCall {
				var one [1]byte
				if k, _ := io.ReadFull(r, one[:]); k > 0 {
					return nil, fmt.Errorf("read chunk ids: more than %d in one call", maxIDsPerCall)
				}
				break
			}
			ids = append(ids, make([]ChunkID, min(len(ids), maxIDsPerCall-len(ids)))...)
			ids = ids[:cap(ids)]
		}
		b := unsafe.Slice(&ids[0][0], len(ids)*len(ChunkID{}))
		k, err := r.Read(b[n:])
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read chunk ids: %w", err)
		}
	}
	if n%len(ChunkID{}) != 0 {
		return nil, fmt.Errorf("read chunk ids: %d bytes is not a whole number of 32-byte ids", n)
	}
	return ids[:n/len(ChunkID{})], nil
}

// Buffers a server reuses across requests: they are large, and fresh
// memory costs a page fault per page.
var (
	idBuffers  sync.Pool // *[]ChunkID, for readIDs
	putReaders sync.Pool // *bufio.Reader of putReaderSize, for upload streams
)

const (
	putReaderSize = 256 << 10
	maxPooledIDs  = 64 << 10 // a larger buffer is left to the collector
)

// pooledIDs reads ids with a buffer from the pool; release gives it back
// once the ids are no longer used.
func pooledIDs(r io.Reader) (ids []ChunkID, release func(), err error) {
	var buf []ChunkID
	if p, ok := idBuffers.Get().(*[]ChunkID); ok {
		buf = *p
	}
	ids, err = readIDs(r, buf)
	return ids, func() {
		if cap(ids) <= maxPooledIDs {
			b := ids[:0]
			idBuffers.Put(&b)
		}
	}, err
}

func appendIDs(b []byte, ids []ChunkID) []byte {
	b = slices.Grow(b, len(ids)*len(ChunkID{}))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

// readerSize returns the length of what r holds, when it can tell.
func readerSize(r io.Reader) (int64, bool) {
	switch v := r.(type) {
	case *os.File:
		fi, err := v.Stat()
		if err != nil {
			return 0, false
		}
		return fi.Size(), true
	case interface{ Size() int64 }:
		return v.Size(), true
	}
	return 0, false
}

// writeFrame writes one chunk as a frame. A reader whose size it cannot
// tell is read into memory first (chunks are small).
func writeFrame(w io.Writer, id ChunkID, r io.Reader) error {
	size, ok := readerSize(r)
	if !ok {
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		size, r = int64(len(data)), bytes.NewReader(data)
	}
	var hdr [frameHeaderSize]byte
	copy(hdr[:32], id[:])
	binary.BigEndian.PutUint64(hdr[32:], uint64(size))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	n, err := io.Copy(w, r)
	if err == nil && n != size {
		err = fmt.Errorf("chunk %s: %d bytes, want %d", id, n, size)
	}
	return err
}

// readFrameHeader reads a frame header; end is set for the end frame.
func readFrameHeader(r io.Reader) (id ChunkID, size int64, end bool, err error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return id, 0, false, fmt.Errorf("stream cut before its end: %w", err)
	}
	copy(id[:], hdr[:32])
	n := binary.BigEndian.Uint64(hdr[32:])
	if id == (ChunkID{}) && n == 0 {
		return id, 0, true, nil
	}
	if n > maxFileSize {
		return id, 0, false, fmt.Errorf("chunk %s: length %d out of range", id, n)
	}
	return id, int64(n), false, nil
}
