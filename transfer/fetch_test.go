package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// countingSource counts the chunks a source hands out.
type countingSource struct {
	Source
	mu     sync.Mutex
	served map[ChunkID]int
}

func (c *countingSource) Get(ctx context.Context, id ChunkID) (io.ReadCloser, error) {
	rc, err := c.Source.Get(ctx, id)
	if err == nil {
		c.mu.Lock()
		c.served[id]++
		c.mu.Unlock()
	}
	return rc, err
}

func (c *countingSource) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.served {
		n += v
	}
	return n
}

func makeChunks(t *testing.T, store ChunkStore, n, size int) []ChunkRef {
	t.Helper()
	var refs []ChunkRef
	for i := range n {
		data := randomBytes(uint64(i)+1000, size)
		id := HashChunk(data)
		mustNo(t, store.Put(context.Background(), id, bytes.NewReader(data)))
		refs = append(refs, ChunkRef{ID: id, Size: int64(size)})
	}
	return refs
}

// TestFetchPeerToPeer has six nodes fetch the same chunks at once from one
// origin and from each other, over HTTP; the origin must send each chunk
// about once.
func TestFetchPeerToPeer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	originStore := newMemStore()
	refs := makeChunks(t, originStore, 300, 40<<10)
	origin := &countingSource{Source: originStore, served: map[ChunkID]int{}}
	originURL := serveStore(t, &sourceStore{origin}, HandlerOptions{})

	const nodes = 6
	stores := make([]*DiskStore, nodes)
	peers := make([]Source, nodes)
	for i := range stores {
		s, err := NewDiskStore(t.TempDir())
		mustNo(t, err)
		stores[i] = s
		peers[i] = serveStore(t, s, HandlerOptions{})
	}
	var wg sync.WaitGroup
	stats := make([]FetchStats, nodes)
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Go(func() {
			f := &Fetcher{Store: stores[i], Origins: []Source{originURL}, Peers: peers, Self: i, PeerMinBytes: -1}
			stats[i], errs[i] = f.Fetch(ctx, refs)
		})
	}
	wg.Wait()
	fromPeers := 0
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		missing, _ := stores[i].Missing(ctx, idsOf(refs))
		if len(missing) != 0 {
			t.Fatalf("node %d lacks %d chunks after Fetch", i, len(missing))
		}
		fromPeers += stats[i].FromPeers
	}
	if sent := origin.total(); sent > len(refs)*13/10 {
		t.Fatalf("the origin sent %d chunks for %d distinct ones (want about one each)", sent, len(refs))
	}
	if fromPeers < len(refs)*(nodes-1)/2 {
		t.Fatalf("only %d chunks came from peers", fromPeers)
	}
}

// sourceStore makes a Source servable by ChunkHandler (which wants a
// ChunkStore); Put is refused.
type sourceStore struct{ Source }

func (sourceStore) Put(context.Context, ChunkID, io.Reader) error {
	return errors.New("read only")
}

func idsOf(refs []ChunkRef) []ChunkID {
	ids := make([]ChunkID, len(refs))
	for i, r := range refs {
		ids[i] = r.ID
	}
	return ids
}

// corruptSource serves other bytes than asked for.
type corruptSource struct{ Source }

func (c corruptSource) Get(ctx context.Context, id ChunkID) (io.ReadCloser, error) {
	if _, err := c.Source.Get(ctx, id); err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader([]byte("not it"))), nil
}

func TestFetchFallsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	good := newMemStore()
	refs := makeChunks(t, good, 20, 1000)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	half := newMemStore()
	for _, r := range refs[:10] {
		rc, _ := good.Get(ctx, r.ID)
		mustNo(t, half.Put(ctx, r.ID, rc))
	}
	tests := []struct {
		name    string
		origins []Source
		peers   []Source
	}{
		{"dead peer", []Source{good}, []Source{nil, HTTPSource(deadURL, nil)}},
		{"corrupt origin first", []Source{corruptSource{good}, good}, nil},
		{"origin lacking some", []Source{half, good}, nil},
	}
	for _, tt := range tests {
		s, err := NewDiskStore(t.TempDir())
		mustNo(t, err)
		f := &Fetcher{Store: s, Origins: tt.origins, Peers: tt.peers, Self: 0, PeerMinBytes: -1, OriginWait: 100 * time.Millisecond}
		st, err := f.Fetch(ctx, refs)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if st.Fetched != len(refs) {
			t.Fatalf("%s: fetched %d of %d", tt.name, st.Fetched, len(refs))
		}
	}

	// No source has it: a clear error, after OriginWait.
	s, err := NewDiskStore(t.TempDir())
	mustNo(t, err)
	f := &Fetcher{Store: s, Origins: []Source{newMemStore()}, OriginWait: 100 * time.Millisecond}
	start := time.Now()
	_, err = f.Fetch(ctx, refs[:1])
	if !errors.Is(err, ErrNoSource) {
		t.Fatalf("fetch from sources that lack the chunk: %v, want ErrNoSource", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("giving up took %v", d)
	}
}

func TestFetchCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := NewDiskStore(t.TempDir())
	mustNo(t, err)
	f := &Fetcher{Store: s, Origins: []Source{newMemStore()}}
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	_, err = f.Fetch(ctx, []ChunkRef{{ID: HashChunk([]byte("x")), Size: 1}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch after cancel: %v", err)
	}
}

func TestUploadNoticesChangedSource(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for i := range 3 {
		mustNo(t, osWriteFile(dir, fmt.Sprintf("f%d", i), fmt.Sprint("content ", i)))
	}
	tree, err := BuildManifest(ctx, dir, BuildOptions{})
	mustNo(t, err)
	mustNo(t, osWriteFile(dir, "f1", "changed!!"))
	disk, err := NewDiskStore(t.TempDir())
	mustNo(t, err)
	for _, dst := range []ChunkStore{disk, serveStore(t, disk, HandlerOptions{AllowPut: true})} {
		_, _, err = Upload(ctx, &tree.Manifest, tree, dst, UploadOptions{})
		if !errors.Is(err, ErrSourceChanged) {
			t.Fatalf("Upload after a file changed: %v, want ErrSourceChanged", err)
		}
	}
}
