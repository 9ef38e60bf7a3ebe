package coordinator_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/client"
	"github.com/sky-coord/sky-coord/coordinator"
	"github.com/sky-coord/sky-coord/providers/local"
	"github.com/sky-coord/sky-coord/spec"
)

// startServer runs a coordinator on loopback with the local provider (its
// controllers never get an agent binary here, so no cluster comes UP).
func startServer(t *testing.T) (*coordinator.Server, string) {
	t.Helper()
	srv, addr, stop := coordinator.ServeTest(t, t.TempDir(), local.New(t.TempDir()))
	t.Cleanup(stop)
	return srv, addr
}

// startAndLaunch starts a coordinator (startServer) and launches cluster
// "c" of nodes nodes on it, which fails at the bootstrap.
func startAndLaunch(t *testing.T, nodes int) (*client.Client, *api.SubmitResponse) {
	t.Helper()
	_, addr := startServer(t)
	c := client.New(addr, "secret-token")
	resp, err := c.Launch(context.Background(), api.LaunchRequest{Cluster: "c", Task: &spec.Task{NumNodes: nodes, Run: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	return c, resp
}

func TestEveryEndpointNeedsTheToken(t *testing.T) {
	_, addr := startServer(t)
	for _, ep := range []struct{ method, path string }{
		{"GET", "/v1/health"}, {"GET", "/v1/clusters"}, {"POST", "/v1/launch"}, {"POST", "/v1/chunks/missing"}, {"PUT", "/v1/chunks/" + strings.Repeat("b", 64)}, {"POST", "/v1/plan"}, {"GET", "/v1/check"}, {"GET", "/v1/ssh-keys"}, {"POST", "/v1/ssh-keys/forget"}, {"GET", "/v1/clusters/x/shell"}, {"POST", "/v1/agent/node-events"},
		{"GET", "/v1/clusters/x/jobs"}, {"POST", "/v1/clusters/x/down"}, {"POST", "/v1/shutdown"}, {"GET", "/v1/chunk-store"},
		{"GET", "/v1/chunks/" + strings.Repeat("a", 64)}, {"POST", "/v1/agent/job-events"},
	} {
		req, _ := http.NewRequest(ep.method, "http://"+addr+ep.path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer wrong")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong token: %d, want 401", ep.method, ep.path, resp.StatusCode)
		}
	}
}

func TestBadRequestsGetClearErrors(t *testing.T) {
	_, addr := startServer(t)
	c := client.New(addr, "secret-token")
	ctx := context.Background()
	task := &spec.Task{NumNodes: 1, Run: "true"}
	tests := []struct {
		name   string
		call   func() error
		status int
		says   string
	}{
		{"bad cluster name", func() error {
			_, err := c.Launch(ctx, api.LaunchRequest{Cluster: "1bad name", Task: task})
			return err
		}, 400, "cluster name"},
		{"unknown cloud", func() error {
			_, err := c.Launch(ctx, api.LaunchRequest{Cluster: "c", Task: &spec.Task{NumNodes: 1, Resources: spec.Resources{Cloud: "aws"}}})
			return err
		}, 400, `offered only on aws, which is not enabled here`},
		{"missing blob", func() error {
			_, err := c.Launch(ctx, api.LaunchRequest{Cluster: "c", Task: task, Blobs: []api.BlobRef{{Digest: strings.Repeat("b", 64), Dest: "~/sky_workdir"}}})
			return err
		}, 400, "upload it again"},
		{"oversized manifest delta", func() error {
			_, err := c.Launch(ctx, api.LaunchRequest{Cluster: "c", Task: task, Blobs: []api.BlobRef{{Digest: strings.Repeat("b", 64), Dest: "~/sky_workdir",
				Delta: make([]byte, api.MaxBlobDelta+1)}}})
			return err
		}, 400, "send it without one"},
		{"exec on a missing cluster", func() error {
			_, err := c.Exec(ctx, "nope", api.ExecRequest{Task: task})
			return err
		}, 404, "launch it first"},
		{"down of a missing cluster", func() error { return c.SetDesired(ctx, "nope", "down") }, 404, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ce *client.Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want an API error", err)
			}
			if ce.Status != tt.status || !strings.Contains(ce.Message, tt.says) {
				t.Errorf("got %d %q, want %d containing %q", ce.Status, ce.Message, tt.status, tt.says)
			}
			if strings.HasSuffix(ce.Message, ": conflict") || strings.HasSuffix(ce.Message, ": not found") {
				t.Errorf("message leaks a sentinel: %q", ce.Message)
			}
		})
	}
}

// TestLaunchFailureIsReported: with no agent binary the bootstrap fails;
// the cluster keeps the error and its job ends FAILED_DRIVER.
func TestLaunchFailureIsReported(t *testing.T) {
	c, resp := startAndLaunch(t, 2)
	ctx := context.Background()
	var after uint64
	for {
		cl, err := c.Cluster(ctx, "c")
		if err != nil {
			t.Fatal(err)
		}
		if cl.Error != "" {
			if !strings.Contains(cl.Error, "agent binary") {
				t.Errorf("launch error %q does not say what failed", cl.Error)
			}
			break
		}
		evs, err := c.Events(ctx, "c", after, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) > 0 {
			after = evs[len(evs)-1].Seq
		}
	}
	j, err := c.Job(ctx, "c", resp.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != api.JobFailedDriver || j.Message == "" {
		t.Errorf("job = %s %q, want FAILED_DRIVER with the reason", j.Status, j.Message)
	}
	if err := c.SetDesired(ctx, "c", "down"); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := c.Cluster(ctx, "c"); client.IsNotFound(err) {
			break
		}
		if _, err := c.Events(ctx, "c", after, 1); err != nil && !client.IsNotFound(err) {
			t.Fatal(err)
		}
	}
}

// A job read with ?wait answers once the job ends, without the client
// polling: here when the launch fails for want of an agent binary.
func TestWaitJobAnswersWhenTheJobEnds(t *testing.T) {
	c, resp := startAndLaunch(t, 1)
	ctx := context.Background()
	j, err := c.WaitJob(ctx, "c", resp.JobID, 20)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != api.JobFailedDriver || j.Task != nil {
		t.Errorf("job = %s (task sent: %v), want FAILED_DRIVER without its task", j.Status, j.Task != nil)
	}
	if _, err := c.WaitJob(ctx, "c", resp.JobID+1, 20); !client.IsNotFound(err) {
		t.Errorf("wait for a job that does not exist: %v, want not found", err)
	}
}
