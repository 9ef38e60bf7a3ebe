package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/api"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1)
	routes := []struct{ method, path string }{
		{"GET", "/v1/health"},
		{"POST", "/v1/jobs"},
		{"POST", "/v1/jobs/1/cancel"},
		{"GET", "/v1/jobs/1/log"},
		{"POST", "/v1/node/sync"},
		{"POST", "/v1/node/exec"},
		{"POST", "/v1/node/kill"},
		{"POST", "/v1/shutdown"},
	}
	for _, rt := range routes {
		for _, auth := range []string{"", "Bearer wrong", c.token, "bearer " + c.token} {
			req, err := http.NewRequest(rt.method, c.agents[0].url+rt.path, strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with Authorization %q: %s, want 401", rt.method, rt.path, auth, resp.Status)
			}
		}
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1)
	resp := c.do(0, http.MethodGet, "/v1/health", nil)
	var got api.AgentHealth
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	cfg := c.agents[0].cfg
	b, _ := json.Marshal(cfg)
	sum := sha256.Sum256(b)
	want := api.AgentHealth{Version: "test", Cluster: "c1", Rank: 0, NodeID: "node-0",
		ConfigHash: hex.EncodeToString(sum[:]), PID: os.Getpid(), CPUs: 4, GPUs: 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("health (-want +got):\n%s", diff)
	}
}

// execFrames runs a NodeExecRequest against agent 0 and returns its frames.
func execFrames(t *testing.T, c *testCluster, req api.NodeExecRequest) []api.ExecFrame {
	t.Helper()
	resp := c.do(0, http.MethodPost, "/v1/node/exec", req)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("exec: %s %s", resp.Status, b)
	}
	var frames []api.ExecFrame
	dec := json.NewDecoder(resp.Body)
	for {
		var f api.ExecFrame
		if err := dec.Decode(&f); errors.Is(err, io.EOF) {
			return frames
		} else if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
}

func TestExecStream(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1)
	req := api.NodeExecRequest{JobID: 11, Kind: "run", LogPath: "logs/x.log",
		Script: "echo out $FOO $HOME; printf 'no newline'; kill -SEGV $$", Env: map[string]string{"FOO": "bar"}}
	frames := execFrames(t, c, req)
	if len(frames) < 2 || frames[0].PID == 0 || frames[len(frames)-1].Exit == nil {
		t.Fatalf("frames = %+v, want PID first and Exit last", frames)
	}
	var out bytes.Buffer
	for _, f := range frames[1 : len(frames)-1] {
		if f.PID != 0 || f.Exit != nil {
			t.Errorf("middle frame %+v carries PID or Exit", f)
		}
		out.Write(f.Data)
	}
	want := "out bar " + c.agents[0].cfg.Home + "\nno newline"
	if out.String() != want {
		t.Errorf("output = %q, want %q", out.String(), want)
	}
	if got := *frames[len(frames)-1].Exit; got != 139 {
		t.Errorf("exit = %d, want 139 (128+SIGSEGV)", got)
	}
	if got := c.agents[0].readLog(t, "logs/x.log"); got != want {
		t.Errorf("node log = %q, want %q", got, want)
	}

	for _, bad := range []api.NodeExecRequest{
		{JobID: 11, Kind: "other", LogPath: "x.log"},
		{JobID: 11, Kind: "run", LogPath: "../x.log"},
		{JobID: 11, Kind: "run", LogPath: "/tmp/x.log"},
	} {
		if resp := c.do(0, http.MethodPost, "/v1/node/exec", bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("exec %+v: %s, want 400", bad, resp.Status)
		}
	}
}

func TestExecDoesNotWaitForBackgroundProcess(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1)
	t.Cleanup(func() { c.agents[0].a.killJob(14) })
	// The subshell keeps the pty open and ignores the hangup.
	start := time.Now()
	frames := execFrames(t, c, api.NodeExecRequest{JobID: 14, Kind: "run", LogPath: "x.log",
		Script: "(trap '' HUP; sleep 30) & echo main done"})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("exec took %v, want about the drain grace (%v)", d, drainGrace)
	}
	last := frames[len(frames)-1]
	if last.Exit == nil || *last.Exit != 0 {
		t.Errorf("last frame %+v, want exit 0", last)
	}
}

func TestExecCancelledRequestKillsProcess(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1)
	body, _ := json.Marshal(api.NodeExecRequest{JobID: 12, Kind: "run", LogPath: "x.log", Script: "sleep 60"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.agents[0].url+"/v1/node/exec", bytes.NewReader(body))
	api.SetToken(req, c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var f api.ExecFrame
	if err := json.NewDecoder(resp.Body).Decode(&f); err != nil || f.PID == 0 {
		t.Fatalf("first frame %+v, %v; want a PID", f, err)
	}
	waitFor(t, "the process to run", func() bool { return len(c.agents[0].jobProcs(12)) > 0 })
	cancel()
	waitFor(t, "the process to be killed", func() bool { return len(c.agents[0].jobProcs(12)) == 0 })
}

func TestNodeKillRefusesLateExec(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1)
	if resp := c.do(0, http.MethodPost, "/v1/node/kill", api.NodeKillRequest{JobID: 13}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("kill: %s", resp.Status)
	}
	resp := c.do(0, http.MethodPost, "/v1/node/exec", api.NodeExecRequest{JobID: 13, Kind: "run", LogPath: "x.log", Script: "true"})
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("exec after kill: %s, want 409", resp.Status)
	}
}

func TestNodeSyncRejectsBadDest(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	digest := c.coord.addTree(t, src)
	for _, dest := range []string{"~", "~other/x", ""} {
		resp := c.do(0, http.MethodPost, "/v1/node/sync", api.NodeSyncRequest{Blobs: []api.BlobRef{{Digest: digest, Dest: dest}}})
		if resp.StatusCode != http.StatusInternalServerError {
			t.Errorf("sync to %q: %s, want 500", dest, resp.Status)
		}
	}
	if _, err := os.Stat(filepath.Join(c.agents[0].cfg.Home, "sky_workdir")); err != nil {
		t.Errorf("~/sky_workdir not created: %v", err)
	}
}
