package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sky-coord/sky-coord/api"
)

// nodeClient is how the head drives one node of a job. The head's own
// node is driven in-process and the others over HTTP, through the same
// code (syncBlobs, execute, killJob) on the node's side.
type nodeClient interface {
	sync(ctx context.Context, req api.NodeSyncRequest) error
	exec(ctx context.Context, req api.NodeExecRequest, emit frameFunc) error
	kill(ctx context.Context, jobID int64) error
}

var (
	_ nodeClient = localNode{}
	_ nodeClient = remoteNode{}
)

// node returns the client for n: in-process when n is this agent's node.
func (a *Agent) node(n api.AgentNode) nodeClient {
	if n.Rank == a.cfg.Rank {
		return localNode{a}
	}
	return remoteNode{a: a, base: "http://" + n.Addr}
}

type localNode struct{ a *Agent }

func (l localNode) sync(ctx context.Context, req api.NodeSyncRequest) error {
	return l.a.syncBlobs(ctx, req)
}

func (l localNode) exec(ctx context.Context, req api.NodeExecRequest, emit frameFunc) error {
	return l.a.execute(ctx, req, emit)
}

func (l localNode) kill(_ context.Context, jobID int64) error {
	l.a.killJob(jobID)
	return nil
}

type remoteNode struct {
	a    *Agent
	base string // http://host:port
}

// errNoExit: the stream of a remote execution ended without an Exit frame.
var errNoExit = errors.New("output stream ended without an exit code")

func (r remoteNode) post(ctx context.Context, path string, body any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	api.SetToken(req, r.a.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.a.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close() // read only
		return nil, fmt.Errorf("POST %s: %s", path, responseError(resp))
	}
	return resp, nil
}

func (r remoteNode) sync(ctx context.Context, req api.NodeSyncRequest) error {
	resp, err := r.post(ctx, "/v1/node/sync", req)
	if err != nil {
		return err
	}
	return api.CloseBody(resp.Body)
}

func (r remoteNode) kill(ctx context.Context, jobID int64) error {
	resp, err := r.post(ctx, "/v1/node/kill", api.NodeKillRequest{JobID: jobID})
	if err != nil {
		return err
	}
	return api.CloseBody(resp.Body)
}

func (r remoteNode) exec(ctx context.Context, req api.NodeExecRequest, emit frameFunc) error {
	resp, err := r.post(ctx, "/v1/node/exec", req)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var f api.ExecFrame
		if err := dec.Decode(&f); err != nil {
			resp.Body.Close() // read only
			if errors.Is(err, io.EOF) {
				return errNoExit
			}
			return fmt.Errorf("read exec stream: %w", err)
		}
		if err := emit(f); err != nil {
			resp.Body.Close() // read only
			return err
		}
		if f.Exit != nil {
			// The node ends the stream right after the exit code;
			// reading to that end keeps the connection for the next job.
			return api.CloseBody(resp.Body)
		}
	}
}
