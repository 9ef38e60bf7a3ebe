package agent

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// The head drives a worker over one kept connection from job to job: it
// reads each answer to its end, the exec stream too, which it stops
// reading at the exit code. (A connection closed early costs every job a
// dial on both sides.)
func TestRemoteNodeKeepsItsConnection(t *testing.T) {
	var conns atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/node/sync", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("POST /v1/node/kill", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("{}\n")) })
	mux.HandleFunc("POST /v1/node/exec", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		code := 0
		for _, f := range []api.ExecFrame{{PID: 7}, {Data: []byte("hi\n")}, {Exit: &code}} {
			_ = enc.Encode(f)
			_ = http.NewResponseController(w).Flush()
		}
		time.Sleep(20 * time.Millisecond) // the stream's end comes apart from the exit code, as from a node
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	a, err := New(api.AgentConfig{Token: "t", Home: t.TempDir(), Marker: "m", CoordinatorURL: "http://127.0.0.1:1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := remoteNode{a: a, base: srv.URL}
	ctx := context.Background()
	for job := range 3 {
		if err := n.sync(ctx, api.NodeSyncRequest{}); err != nil {
			t.Fatal(err)
		}
		var frames int
		if err := n.exec(ctx, api.NodeExecRequest{JobID: int64(job)}, func(api.ExecFrame) error { frames++; return nil }); err != nil {
			t.Fatal(err)
		}
		if frames != 3 {
			t.Fatalf("job %d: %d frames, want 3", job, frames)
		}
		if err := n.kill(ctx, int64(job)); err != nil {
			t.Fatal(err)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("3 jobs (sync, exec, kill each) made %d connections; want 1", got)
	}
}
