package transfer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func serveStore(t *testing.T, s ChunkStore, opts HandlerOptions) *HTTPStore {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/v1/chunks/", http.StripPrefix("/v1/chunks", ChunkHandler(s, opts)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return HTTPSource(srv.URL+"/v1/chunks/", srv.Client())
}

func TestHTTPStoreProtocol(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	disk, err := NewDiskStore(t.TempDir())
	mustNo(t, err)
	remote := serveStore(t, disk, HandlerOptions{AllowPut: true})
	a, b, c := []byte("a"), randomBytes(2, 1<<20), []byte{}
	ida, idb, idc := HashChunk(a), HashChunk(b), HashChunk(c)

	mustNo(t, remote.Put(ctx, ida, bytes.NewReader(a)))
	if err := remote.Put(ctx, idb, bytes.NewReader(a)); !errors.Is(err, ErrChunkCorrupt) {
		t.Fatalf("PUT of corrupt data: %v, want ErrChunkCorrupt", err)
	}
	open := func(id ChunkID) (io.ReadCloser, error) {
		switch id {
		case idb:
			return io.NopCloser(bytes.NewReader(b)), nil
		case idc:
			return io.NopCloser(bytes.NewReader(c)), nil
		}
		return nil, errors.New("unexpected")
	}
	mustNo(t, remote.PutMany(ctx, []ChunkRef{{ID: idb, Size: int64(len(b))}, {ID: idc, Size: 0}}, open))

	missing, err := remote.Missing(ctx, []ChunkID{ida, HashChunk([]byte("x")), idb, idc})
	mustNo(t, err)
	if len(missing) != 1 || missing[0] != HashChunk([]byte("x")) {
		t.Fatalf("Missing = %v", missing)
	}
	if got := readChunk(t, remote, idb); !bytes.Equal(got, b) {
		t.Fatal("GET returned other bytes")
	}
	if _, err := remote.Get(ctx, HashChunk([]byte("x"))); !errors.Is(err, ErrChunkNotFound) {
		t.Fatalf("GET of a missing chunk: %v, want ErrChunkNotFound", err)
	}
	got := map[ChunkID]string{}
	err = remote.GetMany(ctx, []ChunkID{idc, HashChunk([]byte("x")), ida, idb}, func(id ChunkID, r io.Reader) error {
		data, err := io.ReadAll(r)
		got[id] = string(data)
		return err
	})
	mustNo(t, err)
	if len(got) != 3 || got[ida] != "a" || got[idb] != string(b) || got[idc] != "" {
		t.Fatalf("GetMany returned %d chunks", len(got))
	}

	// A read-only endpoint refuses uploads.
	ro := serveStore(t, disk, HandlerOptions{})
	if err := ro.Put(ctx, ida, bytes.NewReader(a)); err == nil {
		t.Fatal("PUT to a read-only endpoint succeeded")
	}
}

func TestHTTPGetManyNoticesACutStream(t *testing.T) {
	t.Parallel()
	id := HashChunk([]byte("x"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var hdr [frameHeaderSize]byte
		copy(hdr[:32], id[:])
		hdr[39] = 10 // 10 bytes announced, 1 sent, no end frame
		w.Write(hdr[:])
		w.Write([]byte("x"))
	}))
	defer srv.Close()
	err := HTTPSource(srv.URL, nil).GetMany(context.Background(), []ChunkID{id}, func(ChunkID, io.Reader) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "cut") {
		t.Fatalf("GetMany on a cut stream: %v, want an error saying so", err)
	}
}

func TestHTTPGetManyWaitsForExpectedChunks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	disk, err := NewDiskStore(t.TempDir())
	mustNo(t, err)
	remote := serveStore(t, disk, HandlerOptions{})
	data := []byte("later")
	id := HashChunk(data)
	release := disk.Expect([]ChunkID{id})
	defer release()
	done := make(chan int)
	go func() {
		n := 0
		_ = remote.GetMany(ctx, []ChunkID{id}, func(ChunkID, io.Reader) error { n++; return nil })
		done <- n
	}()
	mustNo(t, disk.Put(ctx, id, bytes.NewReader(data)))
	if n := <-done; n != 1 {
		t.Fatalf("GetMany got %d chunks, want the one that arrived while it waited", n)
	}
}

func TestReadIDs(t *testing.T) {
	t.Parallel()
	var ids []ChunkID
	for i := range 3000 {
		ids = append(ids, HashChunk([]byte{byte(i), byte(i >> 8)}))
	}
	body := appendIDs(nil, ids)
	for _, c := range []struct {
		name string
		buf  []ChunkID
		r    io.Reader
	}{
		{"no buffer", nil, bytes.NewReader(body)},
		{"a small buffer", make([]ChunkID, 0, 5), bytes.NewReader(body)},
		{"a large buffer", make([]ChunkID, 0, 5000), bytes.NewReader(body)},
		{"a byte at a time", nil, iotest.OneByteReader(bytes.NewReader(body))},
	} {
		got, err := readIDs(c.r, c.buf)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !slices.Equal(got, ids) {
			t.Errorf("%s: read %d ids, not the %d sent", c.name, len(got), len(ids))
		}
	}
	if got, err := readIDs(bytes.NewReader(nil), nil); err != nil || len(got) != 0 {
		t.Errorf("an empty body: %d ids, %v", len(got), err)
	}
	if _, err := readIDs(bytes.NewReader(body[:len(body)-1]), nil); err == nil || !strings.Contains(err.Error(), "whole number") {
		t.Errorf("a cut body: %v, want an error", err)
	}
}
