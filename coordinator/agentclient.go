package coordinator

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
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// agentClient calls agents' HTTP APIs.
type agentClient struct {
	http   *http.Client
	dialer net.Dialer
	// route, when set, names the dialer that reaches an agent address
	// (a provider's forwarded channel); nil means a direct TCP dial.
	route func(addr string) AgentDialer
}

func newAgentClient() *agentClient {
	a := &agentClient{dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // agents are on the cluster network, never behind a proxy
	tr.MaxIdleConnsPerHost = 4
	tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return a.dial(ctx, addr) }
	a.http = &http.Client{Transport: tr}
	return a
}

// dial opens a connection to an agent's API address.
func (a *agentClient) dial(ctx context.Context, addr string) (net.Conn, error) {
	if a.route != nil {
		if d := a.route(addr); d != nil {
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	return a.dialer.DialContext(ctx, "tcp", addr)
}

func (a *agentClient) do(ctx context.Context, method, addr, token, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return err
	}
	api.SetToken(req, token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s: %w", addr, err)
	}
	defer api.CloseBody(resp.Body)
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &statusError{code: resp.StatusCode, msg: fmt.Sprintf("agent %s: %s %s: %s: %s", addr, method, path, resp.Status, bytes.TrimSpace(msg))}
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func (a *agentClient) health(ctx context.Context, addr, token string) (*api.AgentHealth, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var h api.AgentHealth
	if err := a.do(ctx, http.MethodGet, addr, token, "/v1/health", nil, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

func (a *agentClient) submit(ctx context.Context, addr, token string, job *api.AgentJob) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return a.do(ctx, http.MethodPost, addr, token, "/v1/jobs", job, nil)
}

// cancel tells the head to kill a job. A head that does not know the job
// (it restarted) has killed what it could find: that counts as delivered.
func (a *agentClient) cancel(ctx context.Context, addr, token string, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err := a.do(ctx, http.MethodPost, addr, token, "/v1/jobs/"+strconv.FormatInt(id, 10)+"/cancel", nil, nil)
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusNotFound {
		return nil
	}
	return err
}

// statusError is a non-2xx answer from an agent.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// log opens a job's log stream on the head.
func (a *agentClient) log(ctx context.Context, addr, token string, id int64, follow bool, tail int) (io.ReadCloser, error) {
	q := url.Values{}
	if follow {
		q.Set("follow", "1")
	}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	u := "http://" + addr + "/v1/jobs/" + strconv.FormatInt(id, 10) + "/log?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	api.SetToken(req, token)
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", addr, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("agent %s: job %d log: %s: %s", addr, id, resp.Status, bytes.TrimSpace(msg))
	}
	return resp.Body, nil
}
