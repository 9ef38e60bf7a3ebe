package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/procscan"
	"github.com/sky-coord/sky-coord/transfer"
)

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLog routes an agent's logs to t.Log (shown on failure) and keeps a
// copy for assertions; it goes quiet once the test is over.
type testLog struct {
	t    *testing.T
	mu   sync.Mutex
	buf  bytes.Buffer
	over bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.over {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// fakeCoord serves blobs and records job events, like the coordinator.
type fakeCoord struct {
	srv   *httptest.Server
	token string

	mu         sync.Mutex
	chunks     *transfer.DiskStore
	events     []api.JobEvent
	nodeEvs    []api.NodeEvent
	failEvents int // answer 503 to this many event posts first
}

func (c *fakeCoord) nodeEvents() []api.NodeEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]api.NodeEvent(nil), c.nodeEvs...)
}

func newFakeCoord(t *testing.T, token string) *fakeCoord {
	c := &fakeCoord{token: token}
	mux := http.NewServeMux()
	store, err := transfer.NewDiskStore(filepath.Join(t.TempDir(), "chunks"))
	if err != nil {
		t.Fatal(err)
	}
	c.chunks = store
	mux.Handle("/v1/chunks/", http.StripPrefix("/v1/chunks", transfer.ChunkHandler(store, transfer.HandlerOptions{})))
	mux.HandleFunc("POST /v1/agent/job-events", func(w http.ResponseWriter, r *http.Request) {
		var ev api.JobEvent
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.failEvents > 0 {
			c.failEvents--
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("not now"))
			return
		}
		c.events = append(c.events, ev)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/agent/node-events", func(w http.ResponseWriter, r *http.Request) {
		var ev api.NodeEvent
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		c.mu.Lock()
		c.nodeEvs = append(c.nodeEvs, ev)
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			writeError(w, http.StatusUnauthorized, fmt.Errorf("bad token"))
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// addTree uploads a directory (or file) to the fake coordinator's chunk
// store as the CLI does and returns its manifest id.
func (c *fakeCoord) addTree(t *testing.T, src string) string {
	t.Helper()
	tree, err := transfer.BuildManifest(context.Background(), src, transfer.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := transfer.Upload(context.Background(), &tree.Manifest, tree, c.chunks, transfer.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

func (c *fakeCoord) jobEvents(id int64) []api.JobEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []api.JobEvent
	for _, ev := range c.events {
		if ev.JobID == id {
			out = append(out, ev)
		}
	}
	return out
}

// testAgent is one in-process agent of a test cluster.
type testAgent struct {
	a    *Agent
	cfg  api.AgentConfig
	url  string
	log  *testLog
	done chan error // Serve's result
}

func (ta *testAgent) home(rel string) string {
	return filepath.Join(ta.cfg.Home, filepath.FromSlash(rel))
}

// jobProcs lists the live processes of job id on this node.
func (ta *testAgent) jobProcs(id int64) []int {
	return procscan.WithEnv(fmt.Sprintf("SKY_COORD_JOB=%s/%d", ta.cfg.Marker, id))
}

type testCluster struct {
	t      *testing.T
	coord  *fakeCoord
	agents []*testAgent
	nodes  []api.AgentNode
	token  string
}

// newCluster starts n agents on loopback ports with their own homes, and
// a fake coordinator; all stop when the test ends.
func newCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	return newClusterWith(t, n, nil)
}

// newClusterWith is newCluster with each agent's config changed by mut.
func newClusterWith(t *testing.T, n int, mut func(*api.AgentConfig)) *testCluster {
	t.Helper()
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	token := "tok-" + hex.EncodeToString(rb[:])
	c := &testCluster{t: t, coord: newFakeCoord(t, token), token: token}
	ctx, cancel := context.WithCancel(context.Background())
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := api.AgentConfig{
			Cluster:        "c1",
			Rank:           i,
			NodeID:         fmt.Sprintf("node-%d", i),
			IP:             fmt.Sprintf("10.0.0.%d", i+1),
			Bind:           ln.Addr().String(),
			Home:           t.TempDir(),
			CoordinatorURL: c.coord.srv.URL,
			Token:          token,
			Marker:         fmt.Sprintf("test-%s-%d", hex.EncodeToString(rb[:]), i),
			CPUs:           4,
			GPUs:           2,
		}
		if mut != nil {
			mut(&cfg)
		}
		tl := &testLog{t: t}
		a, err := New(cfg, Options{
			Logger:    slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Version:   "test",
			KillGrace: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		ta := &testAgent{a: a, cfg: cfg, url: "http://" + cfg.Bind, log: tl, done: make(chan error, 1)}
		go func() { ta.done <- a.Serve(ctx, ln) }()
		c.agents = append(c.agents, ta)
		c.nodes = append(c.nodes, api.AgentNode{Rank: i, IP: cfg.IP, Addr: cfg.Bind})
	}
	t.Cleanup(func() {
		cancel()
		for _, ta := range c.agents {
			select {
			case err := <-ta.done:
				if err != nil {
					t.Errorf("agent %d: Serve: %v", ta.cfg.Rank, err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("agent %d: Serve did not return", ta.cfg.Rank)
			}
			ta.done <- nil // for a second reader
			ta.log.mu.Lock()
			ta.log.over = true
			ta.log.mu.Unlock()
		}
	})
	return c
}

// job returns a job for the whole cluster, id and log dir "<id>-test".
func (c *testCluster) job(id int64, setup, run string) api.AgentJob {
	return api.AgentJob{
		JobID:          id,
		Name:           "test",
		TaskID:         fmt.Sprintf("sky-2026-01-02-03-04-05-000006_c1_%d", id),
		LogDir:         fmt.Sprintf("%d-test", id),
		Cluster:        "c1",
		User:           "alice",
		Nodes:          c.nodes,
		NumNodes:       len(c.nodes),
		Setup:          setup,
		Run:            run,
		NumGPUsPerNode: 2,
		ClusterInfo:    `{"cluster_name": "c1", "cloud": "local", "region": null, "zone": null}`,
	}
}

// do sends an authenticated request to agent i.
func (c *testCluster) do(i int, method, path string, body any) *http.Response {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.agents[i].url+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	api.SetToken(req, c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	c.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (c *testCluster) submit(j api.AgentJob) {
	c.t.Helper()
	resp := c.do(0, http.MethodPost, "/v1/jobs", j)
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		c.t.Fatalf("submit job %d: %s %s", j.JobID, resp.Status, b)
	}
}

// waitEnd waits for job id's terminal event and returns all its events.
func (c *testCluster) waitEnd(id int64) []api.JobEvent {
	c.t.Helper()
	var evs []api.JobEvent
	waitFor(c.t, fmt.Sprintf("job %d to end", id), func() bool {
		evs = c.coord.jobEvents(id)
		return len(evs) > 0 && evs[len(evs)-1].Status.Terminal()
	})
	return evs
}

func statuses(evs []api.JobEvent) []api.JobStatus {
	out := make([]api.JobStatus, len(evs))
	for i, ev := range evs {
		out[i] = ev.Status
	}
	return out
}

var pidRE = regexp.MustCompile(`pid=\d+`)

// readLog reads a file under an agent's home with pids made "pid=N".
func (ta *testAgent) readLog(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(ta.home(rel))
	if err != nil {
		t.Fatalf("node %d: %v", ta.cfg.Rank, err)
	}
	return pidRE.ReplaceAllString(string(b), "pid=N")
}
