// Package client is the Go client of the coordinator's HTTP API; the CLI is
// built on it and uses nothing else to reach the coordinator.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/ptystream"
	"github.com/sky-coord/sky-coord/transfer"
)

// Client talks to one coordinator.
type Client struct {
	addr  string
	base  string
	token string
	http  *http.Client
}

// New returns a client for the coordinator at addr (host:port).
func New(addr, token string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the coordinator is reached directly
	return &Client{addr: addr, base: "http://" + addr, token: token, http: &http.Client{Transport: tr}}
}

// Credentials returns what another process of the same user needs to
// reach the coordinator as this client does: its address and token.
func (c *Client) Credentials() (addr, token string) { return c.addr, c.token }

// Error is a non-2xx answer from the coordinator.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// IsNotFound reports whether err is the coordinator's 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

func (c *Client) request(ctx context.Context, method, path string, body io.Reader, ctype string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	api.SetToken(req, c.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the coordinator at %s: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return nil, &Error{Status: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(data), "application/json"
	}
	resp, err := c.request(ctx, method, path, body, ctype)
	if err != nil {
		return err
	}
	defer api.CloseBody(resp.Body)
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode coordinator answer to %s %s: %w", method, path, err)
	}
	return nil
}

// Health returns the coordinator's status.
func (c *Client) Health(ctx context.Context) (*api.ServerHealth, error) {
	var h api.ServerHealth
	return &h, c.call(ctx, http.MethodGet, "/v1/health", nil, &h)
}

// Shutdown stops the coordinator.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/v1/shutdown", nil, nil)
}

// Chunks is the coordinator's chunk store, for uploading workdirs and
// file mounts (transfer.Upload).
func (c *Client) Chunks() *transfer.HTTPStore {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = 16
	return transfer.HTTPSource(c.base+"/v1/chunks", &http.Client{Transport: api.TokenTransport{Token: c.token, Next: tr}})
}

// ChunkStore returns where to upload chunks: the coordinator's own store
// when this client is on its machine and may write there (no network,
// no second read of the files), else the coordinator over HTTP.
func (c *Client) ChunkStore(ctx context.Context) transfer.ChunkStore {
	var info api.ChunkStoreInfo
	if c.call(ctx, http.MethodGet, "/v1/chunk-store", nil, &info) == nil {
		if ds, err := transfer.OpenLocalStore(info.Dir, info.ID); err == nil {
			return ds
		}
	}
	return c.Chunks()
}

// Launch creates or reuses a cluster and queues the task on it.
func (c *Client) Launch(ctx context.Context, req api.LaunchRequest) (*api.SubmitResponse, error) {
	var out api.SubmitResponse
	return &out, c.call(ctx, http.MethodPost, "/v1/launch", req, &out)
}

// Exec queues a task on an UP cluster.
func (c *Client) Exec(ctx context.Context, cluster string, req api.ExecRequest) (*api.SubmitResponse, error) {
	var out api.SubmitResponse
	return &out, c.call(ctx, http.MethodPost, "/v1/clusters/"+url.PathEscape(cluster)+"/exec", req, &out)
}

// Clusters lists every cluster.
func (c *Client) Clusters(ctx context.Context) ([]*api.Cluster, error) {
	var out []*api.Cluster
	return out, c.call(ctx, http.MethodGet, "/v1/clusters", nil, &out)
}

// Cluster returns one cluster.
func (c *Client) Cluster(ctx context.Context, name string) (*api.Cluster, error) {
	var out api.Cluster
	if err := c.call(ctx, http.MethodGet, "/v1/clusters/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetDesired asks for "stop", "start" or "down".
func (c *Client) SetDesired(ctx context.Context, name, action string) error {
	return c.call(ctx, http.MethodPost, "/v1/clusters/"+url.PathEscape(name)+"/"+action, nil, nil)
}

// Jobs returns a cluster's queue.
func (c *Client) Jobs(ctx context.Context, cluster string) ([]*api.Job, error) {
	var out []*api.Job
	return out, c.call(ctx, http.MethodGet, "/v1/clusters/"+url.PathEscape(cluster)+"/jobs", nil, &out)
}

// Job returns one job.
func (c *Client) Job(ctx context.Context, cluster string, id int64) (*api.Job, error) {
	var out api.Job
	if err := c.call(ctx, http.MethodGet, "/v1/clusters/"+url.PathEscape(cluster)+"/jobs/"+strconv.FormatInt(id, 10), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WaitJob returns a job once it has ended, or as it is when waitSec
// seconds have passed. A coordinator that cannot wait answers at once.
func (c *Client) WaitJob(ctx context.Context, cluster string, id int64, waitSec int) (*api.Job, error) {
	var out api.Job
	path := fmt.Sprintf("/v1/clusters/%s/jobs/%d?wait=%d", url.PathEscape(cluster), id, waitSec)
	if err := c.call(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Cancel cancels jobs.
func (c *Client) Cancel(ctx context.Context, cluster string, req api.CancelRequest) (*api.CancelResponse, error) {
	var out api.CancelResponse
	return &out, c.call(ctx, http.MethodPost, "/v1/clusters/"+url.PathEscape(cluster)+"/cancel", req, &out)
}

// Events returns a cluster's progress lines after seq `after`, waiting up
// to waitSec seconds for one to arrive.
func (c *Client) Events(ctx context.Context, cluster string, after uint64, waitSec int) ([]api.ClusterEvent, error) {
	var out []api.ClusterEvent
	path := fmt.Sprintf("/v1/clusters/%s/events?after=%d&wait=%d", url.PathEscape(cluster), after, waitSec)
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// Log opens a job's log; with follow it ends when the job does.
func (c *Client) Log(ctx context.Context, cluster string, id int64, follow bool, tail int) (io.ReadCloser, error) {
	q := url.Values{}
	if follow {
		q.Set("follow", "1")
	}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	resp, err := c.request(ctx, http.MethodGet, fmt.Sprintf("/v1/clusters/%s/jobs/%d/log?%s", url.PathEscape(cluster), id, q.Encode()), nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Plan asks which offers a task would launch on, best first.
func (c *Client) Plan(ctx context.Context, req api.PlanRequest) (*api.PlanResponse, error) {
	var out api.PlanResponse
	return &out, c.call(ctx, http.MethodPost, "/v1/plan", req, &out)
}

// Check lists the clouds and whether each is enabled.
func (c *Client) Check(ctx context.Context) ([]api.CloudCheck, error) {
	var out []api.CloudCheck
	return out, c.call(ctx, http.MethodGet, "/v1/check", nil, &out)
}

// ShellOptions shape a `sky-coord ssh` session.
type ShellOptions struct {
	Node       int
	Rows, Cols int
	Term       string
	// Command runs `bash -lc Command`; empty opens a login shell.
	Command string
}

// Shell opens an interactive session on a node of a cluster: the returned
// connection speaks ptystream frames.
func (c *Client) Shell(ctx context.Context, cluster string, o ShellOptions) (*ptystream.Conn, error) {
	q := url.Values{}
	q.Set("node", strconv.Itoa(o.Node))
	if o.Rows > 0 && o.Cols > 0 {
		q.Set("rows", strconv.Itoa(o.Rows))
		q.Set("cols", strconv.Itoa(o.Cols))
	}
	if o.Term != "" {
		q.Set("term", o.Term)
	}
	if o.Command != "" {
		q.Set("cmd", o.Command)
	}
	u, err := url.Parse(c.base)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("reach the coordinator at %s: %w", c.base, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/clusters/"+url.PathEscape(cluster)+"/shell?"+q.Encode(), nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	api.SetToken(req, c.token)
	s, err := ptystream.Dial(conn, req)
	if err != nil {
		conn.Close()
		var he *ptystream.HTTPError
		if errors.As(err, &he) {
			var e api.Error
			msg := he.Body
			if json.Unmarshal([]byte(he.Body), &e) == nil && e.Error != "" {
				msg = e.Error
			}
			return nil, &Error{Status: he.Status, Message: msg}
		}
		return nil, err
	}
	return s, nil
}

// HostKeys lists the pinned SSH host keys.
func (c *Client) HostKeys(ctx context.Context) ([]api.HostKey, error) {
	var out []api.HostKey
	return out, c.call(ctx, http.MethodGet, "/v1/ssh-keys", nil, &out)
}

// ForgetHostKey unpins a host's SSH key; the next connection pins anew.
func (c *Client) ForgetHostKey(ctx context.Context, host string) error {
	return c.call(ctx, http.MethodPost, "/v1/ssh-keys/forget", api.HostKey{Host: host}, nil)
}

// Storages lists the buckets sky-coord knows of.
func (c *Client) Storages(ctx context.Context) ([]api.Storage, error) {
	var out []api.Storage
	return out, c.call(ctx, http.MethodGet, "/v1/storage", nil, &out)
}

// DeleteStorage deletes a bucket sky-coord created (or forgets another).
func (c *Client) DeleteStorage(ctx context.Context, name string) (deletedBucket bool, err error) {
	var out map[string]bool
	err = c.call(ctx, http.MethodDelete, "/v1/storage/"+url.PathEscape(name), nil, &out)
	return out["deleted_bucket"], err
}

// Members lists the coordinator's replicas.
func (c *Client) Members(ctx context.Context) ([]api.Member, error) {
	var out []api.Member
	return out, c.call(ctx, http.MethodGet, "/v1/cluster/members", nil, &out)
}

// SetAutostop sets or cancels a cluster's autostop.
func (c *Client) SetAutostop(ctx context.Context, cluster string, req api.AutostopRequest) error {
	return c.call(ctx, http.MethodPost, "/v1/clusters/"+url.PathEscape(cluster)+"/autostop", req, nil)
}
