package workdir

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sky-coord/sky-coord/transfer"
)

// ProtocolVersion is the version of the socket protocol. A request of
// another version is answered with a fallback, as is one from a program
// of another build (Request.Program): the daemon may be older than the CLI
// that asks.
const ProtocolVersion = 1

// Request asks the Service to bring a tree's description up to date and
// upload it (Op "upload"), or only to read its snapshot ahead of the next
// upload (Op "load").
type Request struct {
	Version  int    `json:"version"`
	Program  string `json:"program"`            // the asking program's build
	Op       string `json:"op"`                 // "upload" or "load"
	Root     string `json:"root"`               // absolute, symbolic links resolved
	Snapshot string `json:"snapshot"`           // the file holding the tree's last description
	Addr     string `json:"addr,omitempty"`     // the coordinator, host:port
	Token    string `json:"token,omitempty"`    // its bearer token; never logged
	Parallel int    `json:"parallel,omitempty"` // uploads at once (8)
}

// Result is what an upload did.
type Result struct {
	Digest  string `json:"digest"`          // the manifest's id
	Delta   []byte `json:"delta,omitempty"` // an encoded transfer.Delta from the last description, when small (see DeltaFor)
	Files   int    `json:"files"`           // files in the tree
	Bytes   int64  `json:"bytes"`           // their bytes
	Sent    int64  `json:"sent"`            // bytes of chunks the coordinator lacked
	Changed int    `json:"changed"`         // paths the watcher reported
}

// message is one line of an answer: progress lines, then one with a
// result, a fallback or an error.
type message struct {
	Progress   *transfer.Progress `json:"progress,omitempty"`
	Result     *Result            `json:"result,omitempty"`
	Fallback   string             `json:"fallback,omitempty"`    // why the asker must describe the tree itself
	OtherBuild bool               `json:"other_build,omitempty"` // the fallback is ErrOtherBuild
	Error      string             `json:"error,omitempty"`
}

// ErrFallback wraps the Service's reasons to let the asker describe the
// tree itself; nothing was uploaded.
var ErrFallback = errors.New("the watch daemon cannot describe this tree now")

// ErrOtherBuild is the fallback of a daemon of another build than the
// asker's: it will answer so until it is replaced.
var ErrOtherBuild = fmt.Errorf("%w: the watch daemon is of another build", ErrFallback)

// Ask sends req to the Service listening on socket and waits for its
// answer, passing progress on to progress (which may be nil). An error
// wrapping ErrFallback means the Service did nothing the asker must
// know of; any other error may come after part of an upload (which is
// harmless: chunks are content-addressed). Cancelling ctx closes the
// connection, which cancels the Service's work.
func Ask(ctx context.Context, socket string, req Request, progress transfer.ProgressFunc) (Result, error) {
	req.Version = ProtocolVersion
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", socket)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrFallback, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return Result{}, askError(ctx, "send the request", err)
	}
	if req.Op == "load" {
		return Result{}, nil // nothing to wait for
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			return Result{}, askError(ctx, "read the answer", err)
		}
		switch {
		case m.Progress != nil:
			if progress != nil {
				progress(*m.Progress)
			}
		case m.Result != nil:
			return *m.Result, nil
		case m.OtherBuild:
			return Result{}, fmt.Errorf("%w (%s)", ErrOtherBuild, m.Fallback)
		case m.Fallback != "":
			return Result{}, fmt.Errorf("%w: %s", ErrFallback, m.Fallback)
		case m.Error != "":
			return Result{}, errors.New(m.Error)
		default:
			return Result{}, fmt.Errorf("%w: an answer of no kind known", ErrFallback)
		}
	}
}

// askError reports a broken conversation: the context's end when that
// broke it, else a fallback (a daemon that died or closed on us has left
// nothing the asker relies on).
func askError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: %s: %v", ErrFallback, what, err)
}
