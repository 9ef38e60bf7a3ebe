package fswatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// Changes is the daemon's answer to a query.
type Changes struct {
	Token  string   `json:"token"`            // opaque; pass it as `since` next time
	Full   bool     `json:"full,omitempty"`   // the daemon cannot tell what changed since `since`: rescan everything
	Paths  []string `json:"paths,omitempty"`  // when !Full: "/"-separated paths relative to root that may have changed since `since`, sorted, no duplicates; "" never appears — the root directory itself is "."
	Reason string   `json:"reason,omitempty"` // when Full: why, for logs (e.g. "first query for this root", "event queue overflowed", "filesystem nfs is not watched")
}

// The wire protocol: one JSON request per connection, answered by one JSON
// response, after which the daemon closes the connection.
type (
	request struct {
		Root  string `json:"root,omitempty"`
		Since string `json:"since,omitempty"`
		Stop  bool   `json:"stop,omitempty"` // make Serve return
	}
	response struct {
		Changes
		Error string `json:"error,omitempty"` // the request failed; Changes is empty
	}
)

// Query asks the daemon listening on socket what changed under root (an
// absolute, symlink-resolved directory path) since the token since ("" =
// never asked). It fails fast (connection refused / no such file) when no
// daemon runs, and gives up after ctx's deadline.
func Query(ctx context.Context, socket, root, since string) (Changes, error) {
	var resp response
	if err := call(ctx, socket, request{Root: root, Since: since}, &resp); err != nil {
		return Changes{}, fmt.Errorf("ask the file watcher at %s about %s: %w", socket, root, err)
	}
	if resp.Error != "" {
		return Changes{}, fmt.Errorf("file watcher at %s about %s: %w", socket, root, errors.New(resp.Error))
	}
	return resp.Changes, nil
}

// Stop asks the daemon listening on socket to stop serving: its Serve
// returns nil once the queries in flight are answered.
func Stop(ctx context.Context, socket string) error {
	var resp response
	if err := call(ctx, socket, request{Stop: true}, &resp); err != nil {
		return fmt.Errorf("stop the file watcher at %s: %w", socket, err)
	}
	if resp.Error != "" {
		return fmt.Errorf("stop the file watcher at %s: %w", socket, errors.New(resp.Error))
	}
	return nil
}

// call sends req on a new connection to socket and decodes the answer into
// resp. Cancelling ctx abandons the call.
func call(ctx context.Context, socket string, req request, resp *response) error {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", socket)
	if err != nil {
		return err
	}
	defer conn.Close() // the answer is read in full before we return
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return fmt.Errorf("set deadline: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("send request: %w", err)
	}
	if err := json.NewDecoder(conn).Decode(resp); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("read answer: %w", err)
	}
	return nil
}
