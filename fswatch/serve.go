package fswatch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	maxRequest  = 64 << 10         // bytes in one request
	readTimeout = 10 * time.Second // to read a request, and again to write its answer
)

// Serve answers queries on l (a unix socket listener) until ctx is done,
// Close is called, or IdleTimeout passes, and returns nil then, or when a
// client asks it to stop (see Stop). It closes l, and answers the queries
// in flight before it returns. It returns an error only when accepting a
// connection fails.
func (d *Daemon) Serve(ctx context.Context, l net.Listener) error {
	var (
		stop      = make(chan struct{})
		stopOnce  sync.Once
		stopping  atomic.Bool
		conns     sync.WaitGroup
		acceptErr = make(chan struct{})
		watcher   = make(chan struct{})
	)
	requestStop := func() { stopOnce.Do(func() { close(stop) }) }
	d.lastQuery.Store(time.Now().UnixNano())
	go func() {
		defer close(watcher)
		defer func() {
			stopping.Store(true)
			_ = l.Close() // makes Accept return; nothing was written through it
		}()
		var idle <-chan time.Time
		var timer *time.Timer
		if d.opts.IdleTimeout > 0 {
			timer = time.NewTimer(d.opts.IdleTimeout)
			defer timer.Stop()
			idle = timer.C
		}
		for {
			select {
			case <-idle:
				quiet := time.Since(time.Unix(0, d.lastQuery.Load()))
				if d.inFlight.Load() == 0 && quiet >= d.opts.IdleTimeout {
					d.log.Info("no query for a while; stopping", "idle", quiet.Round(time.Millisecond))
					return
				}
				timer.Reset(max(d.opts.IdleTimeout-quiet, time.Millisecond))
				continue
			case <-ctx.Done():
			case <-d.done:
			case <-stop:
			case <-acceptErr:
			}
			return
		}
	}()

	var err error
	for {
		conn, aerr := l.Accept()
		if aerr != nil {
			if !stopping.Load() {
				err = fmt.Errorf("accept file watcher queries: %w", aerr)
			}
			break
		}
		done := d.busy()
		conns.Go(func() {
			defer done()
			d.serveConn(ctx, conn, requestStop)
		})
	}
	close(acceptErr)
	<-watcher
	conns.Wait()
	return err
}

// serveConn answers the one request on conn.
func (d *Daemon) serveConn(ctx context.Context, conn net.Conn, requestStop func()) {
	defer conn.Close() // the answer is written, or cannot be
	_ = conn.SetReadDeadline(time.Now().Add(readTimeout))
	var req request
	var resp response
	if err := json.NewDecoder(io.LimitReader(conn, maxRequest)).Decode(&req); err != nil {
		resp.Error = fmt.Sprintf("read request: %v", err)
	} else if req.Stop {
		d.log.Info("asked to stop")
		defer requestStop() // once the answer is written
	} else {
		c, err := d.query(ctx, req.Root, req.Since)
		if err != nil {
			resp.Error = err.Error()
		}
		resp.Changes = c
		d.log.Debug("query answered", "root", req.Root, "full", c.Full, "reason", c.Reason, "paths", len(c.Paths), "err", err)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(readTimeout))
	if err := json.NewEncoder(conn).Encode(resp); err != nil {
		d.log.Debug("writing an answer failed", "err", err)
	}
}
