package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
