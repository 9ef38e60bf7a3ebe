package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/transfer"
)

func TestErrorsCarryTheCoordinatorsMessage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"missing or wrong API token"}`))
			return
		}
		switch r.URL.Path {
		case "/v1/clusters/gone":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"cluster \"gone\": not found"}`))
		default:
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("<html>proxy error</html>"))
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	_, err := New(addr, "tok").Cluster(ctx, "gone")
	if !IsNotFound(err) || err.Error() != `cluster "gone": not found` {
		t.Errorf("Cluster(gone) = %v, want the 404 with its message", err)
	}
	if _, err := New(addr, "bad").Clusters(ctx); err == nil || !strings.Contains(err.Error(), "API token") {
		t.Errorf("wrong token: %v", err)
	}
	if _, err := New(addr, "tok").Clusters(ctx); err == nil || !strings.Contains(err.Error(), "502") {
		t.Errorf("a non-JSON error body: %v, want the status", err)
	}
}

// TestChunkStoreLocalOnlyWhenItIsTheServers: the CLI writes into the
// coordinator's store only when the directory the coordinator reports
// holds the store with the id it reports; otherwise (a remote server,
// another store, an older server without the endpoint) it uploads over
// HTTP.
func TestChunkStoreLocalOnlyWhenItIsTheServers(t *testing.T) {
	store, err := transfer.NewDiskStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		info  *api.ChunkStoreInfo // nil: the endpoint is missing
		local bool
	}{
		{"this machine's store", &api.ChunkStoreInfo{Dir: store.Dir(), ID: store.ID()}, true},
		{"another store's id", &api.ChunkStoreInfo{Dir: store.Dir(), ID: "0123"}, false},
		{"a directory not on this machine", &api.ChunkStoreInfo{Dir: "/nonexistent/chunks", ID: store.ID()}, false},
		{"an older server", nil, false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/chunk-store" || tc.info == nil {
				http.NotFound(w, r)
				return
			}
			_ = json.NewEncoder(w).Encode(tc.info)
		}))
		_, local := New(strings.TrimPrefix(srv.URL, "http://"), "tok").ChunkStore(ctx).(*transfer.DiskStore)
		srv.Close()
		if local != tc.local {
			t.Errorf("%s: local store = %v, want %v", tc.name, local, tc.local)
		}
	}
}
