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
	"strings"
)

// HTTPStore is a ChunkStore at the other end of a ChunkHandler: a peer
// node, or the coordinator.
type HTTPStore struct {
	base   string
	client *http.Client
}

var (
	_ ChunkStore  = (*HTTPStore)(nil)
	_ BatchGetter = (*HTTPStore)(nil)
	_ BatchPutter = (*HTTPStore)(nil)
)

// HTTPSource returns the store served by a ChunkHandler at baseURL (the
// URL it is mounted at, e.g. "http://10.0.0.2:7070/v1/chunks"), reached
// with client. Give a client that adds the credentials the server wants,
// and whose transport keeps as many idle connections per host as requests
// run at once (Fetcher.Parallel); nil means a client of its own that does.
func HTTPSource(baseURL string, client *http.Client) *HTTPStore {
	if client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32
		client = &http.Client{Transport: t}
	}
	return &HTTPStore{base: strings.TrimSuffix(baseURL, "/"), client: client}
}

// CloseIdle closes the connections the store's client keeps open.
func (h *HTTPStore) CloseIdle() { h.client.CloseIdleConnections() }

// String returns the base URL, for error messages.
func (h *HTTPStore) String() string { return h.base }

func (h *HTTPStore) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	return h.client.Do(req)
}

// statusError turns a failed response into an error, mapping 404 and 400
// to ErrChunkNotFound and ErrChunkCorrupt.
func (h *HTTPStore) statusError(op string, resp *http.Response) error {
	msg, _ := readAllLimit(resp.Body, 4<<10)
	text := strings.TrimSpace(string(msg))
	if text == "" {
		text = resp.Status
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s %s: %w", op, h.base, ErrChunkNotFound)
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(text, ErrChunkCorrupt.Error()):
		return fmt.Errorf("%s %s: %w: %s", op, h.base, ErrChunkCorrupt, text)
	}
	return fmt.Errorf("%s %s: %s", op, h.base, text)
}

// Missing asks the server which of ids it lacks.
func (h *HTTPStore) Missing(ctx context.Context, ids []ChunkID) ([]ChunkID, error) {
	var missing []ChunkID
	for len(ids) > 0 {
		batch := ids[:min(len(ids), maxIDsPerCall)]
		ids = ids[len(batch):]
		resp, err := h.do(ctx, http.MethodPost, "/missing", bytes.NewReader(appendIDs(nil, batch)))
		if err != nil {
			return nil, fmt.Errorf("ask %s for missing chunks: %w", h.base, err)
		}
		if resp.StatusCode != http.StatusOK {
			err := h.statusError("ask for missing chunks at", resp)
			resp.Body.Close()
			return nil, err
		}
		more, err := readIDs(resp.Body, nil)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("ask %s for missing chunks: %w", h.base, err)
		}
		missing = append(missing, more...)
	}
	return missing, nil
}

// Get fetches one chunk.
func (h *HTTPStore) Get(ctx context.Context, id ChunkID) (io.ReadCloser, error) {
	resp, err := h.do(ctx, http.MethodGet, "/"+id.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("get chunk %s from %s: %w", id, h.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, fmt.Errorf("chunk %s: %w", id, h.statusError("get from", resp))
	}
	return resp.Body, nil
}

// Put uploads one chunk; the server checks its hash.
func (h *HTTPStore) Put(ctx context.Context, id ChunkID, r io.Reader) error {
	resp, err := h.do(ctx, http.MethodPut, "/"+id.String(), r)
	if err != nil {
		return fmt.Errorf("put chunk %s to %s: %w", id, h.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("chunk %s: %w", id, h.statusError("put to", resp))
	}
	return nil
}

// GetMany fetches many chunks in one request.
func (h *HTTPStore) GetMany(ctx context.Context, ids []ChunkID, fn func(ChunkID, io.Reader) error) error {
	want := make(map[ChunkID]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	resp, err := h.do(ctx, http.MethodPost, "/get", bytes.NewReader(appendIDs(nil, ids)))
	if err != nil {
		return fmt.Errorf("get chunks from %s: %w", h.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return h.statusError("get chunks from", resp)
	}
	br := bufio.NewReaderSize(resp.Body, 256<<10)
	for {
		id, size, end, err := readFrameHeader(br)
		if err != nil {
			return fmt.Errorf("get chunks from %s: %w", h.base, err)
		}
		if end {
			// Read the response to its end: only then does the
			// connection serve the next request.
			_, _ = io.Copy(io.Discard, io.LimitReader(br, 64<<10)) // the chunks are all in
			return nil
		}
		if !want[id] {
			return fmt.Errorf("get chunks from %s: sent chunk %s, which was not asked for", h.base, id)
		}
		lr := &io.LimitedReader{R: br, N: size}
		if err := fn(id, lr); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, lr); err != nil {
			return fmt.Errorf("get chunks from %s: %w", h.base, err)
		}
		if lr.N > 0 {
			return fmt.Errorf("get chunks from %s: stream cut inside chunk %s", h.base, id)
		}
	}
}

// PutMany uploads many chunks in one request, streaming each from open.
func (h *HTTPStore) PutMany(ctx context.Context, refs []ChunkRef, open func(ChunkID) (io.ReadCloser, error)) error {
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 256<<10)
		for _, ref := range refs {
			rc, err := open(ref.ID)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			var hdr [frameHeaderSize]byte
			copy(hdr[:32], ref.ID[:])
			binary.BigEndian.PutUint64(hdr[32:], uint64(ref.Size))
			_, err = bw.Write(hdr[:])
			if err == nil {
				var n int64
				n, err = io.Copy(bw, io.LimitReader(rc, ref.Size))
				if err == nil && n != ref.Size {
					err = fmt.Errorf("chunk %s: source gave %d bytes, want %d", ref.ID, n, ref.Size)
				}
				if err == nil {
					// Read to the end, so a verifying reader checks the hash.
					var one [1]byte
					if n, rerr := rc.Read(one[:]); n > 0 {
						err = fmt.Errorf("chunk %s: source holds more than %d bytes", ref.ID, ref.Size)
					} else if rerr != nil && !errors.Is(rerr, io.EOF) {
						err = rerr
					}
				}
			}
			rc.Close() // read only
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		var end [frameHeaderSize]byte
		_, err := bw.Write(end[:])
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err) // nil: a clean end
	}()
	resp, err := h.do(ctx, http.MethodPost, "/put", pr)
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("put chunks to %s: %w", h.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		pr.CloseWithError(errors.New("server refused the upload"))
		return h.statusError("put chunks to", resp)
	}
	return nil
}
