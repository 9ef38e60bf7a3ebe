package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/creack/pty"

	"github.com/sky-coord/sky-coord/api"
)

// Errors execute returns before a process starts.
var (
	// errBadRequest marks a request that can never succeed.
	errBadRequest = errors.New("bad request")
	// errJobKilled: the job was killed here; it may not start again.
	errJobKilled = errors.New("job killed")
	// errClosing: the agent is shutting down.
	errClosing = errors.New("agent is shutting down")
)

// drainGrace is how long output is still read after the script's process
// exits, for processes it left behind that hold the pty.
const drainGrace = time.Second

// frameFunc receives the frames of one execution, in order: PID, Data...,
// Exit. An error from it means the receiver is gone.
type frameFunc func(api.ExecFrame) error

func (a *Agent) handleExec(w http.ResponseWriter, r *http.Request) {
	var req api.NodeExecRequest
	if !readJSON(w, r, &req) {
		return
	}
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	started := false
	err := a.execute(r.Context(), req, func(f api.ExecFrame) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if err := enc.Encode(f); err != nil {
			return err
		}
		return rc.Flush()
	})
	switch {
	case err == nil:
	case !started:
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, errBadRequest):
			code = http.StatusBadRequest
		case errors.Is(err, errJobKilled):
			code = http.StatusConflict
		case errors.Is(err, errClosing):
			code = http.StatusServiceUnavailable
		}
		writeError(w, code, err)
	default:
		a.log.Warn("exec stream ended early", "job", req.JobID, "kind", req.Kind, "err", err)
	}
}

// execute runs req's script with /bin/bash under a pty, in a new session
// (its own process group), and hands its output to emit. It returns an
// error without emitting anything when the process could not start;
// otherwise it emits PID, Data and Exit frames. Cancelling ctx kills the
// process group. The output also goes to ~/<req.LogPath>, with "\r"
// before "\n" removed.
func (a *Agent) execute(ctx context.Context, req api.NodeExecRequest, emit frameFunc) error {
	if req.Kind != "setup" && req.Kind != "run" {
		return fmt.Errorf("exec kind %q, want setup or run: %w", req.Kind, errBadRequest)
	}
	if !filepath.IsLocal(req.LogPath) {
		return fmt.Errorf("exec log path %q is not relative to the home directory: %w", req.LogPath, errBadRequest)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("exec %s of job %d: %w", req.Kind, req.JobID, err)
	}
	if err := a.mayStart(req.JobID); err != nil {
		return fmt.Errorf("exec %s of job %d: %w", req.Kind, req.JobID, err)
	}
	logPath := filepath.Join(a.cfg.Home, req.LogPath)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return fmt.Errorf("exec %s of job %d: create log directory: %w", req.Kind, req.JobID, err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("exec %s of job %d: open log: %w", req.Kind, req.JobID, err)
	}
	defer logf.Close() // append-only log; write errors are reported as they happen
	script, err := a.writeScript(req)
	if err != nil {
		return err
	}
	defer os.Remove(script) // best effort: it lives under ~/.sky, mode 0700

	cmd, err := a.jobCommand(script, a.processEnv(req))
	if err != nil {
		return fmt.Errorf("exec %s of job %d: %w", req.Kind, req.JobID, err)
	}
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 200})
	if err != nil {
		return fmt.Errorf("exec %s of job %d: start bash under a pty: %w", req.Kind, req.JobID, err)
	}
	if pm, err := pollable(ptmx); err == nil {
		ptmx = pm
	} else {
		a.log.Warn("pty master stays in blocking mode: output of processes left behind may keep a reader busy", "err", err)
	}
	defer ptmx.Close() // read side; nothing to flush
	p, err := a.track(req.JobID, cmd.Process.Pid)
	if err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // never started for real
		_ = cmd.Wait()
		return fmt.Errorf("exec %s of job %d: %w", req.Kind, req.JobID, err)
	}
	defer a.untrack(req.JobID, p)
	log := a.log.With("job", req.JobID, "kind", req.Kind, "pid", p.pid)
	log.Info("process started")

	emitOK := true
	send := func(f api.ExecFrame) {
		if !emitOK {
			return
		}
		if err := emit(f); err != nil {
			emitOK = false
			log.Warn("output receiver gone; killing the process group", "err", err)
			go a.terminate(p)
		}
	}
	send(api.ExecFrame{PID: p.pid})

	chunks := make(chan []byte, 16)
	quit := make(chan struct{})
	defer close(quit)
	go readPTY(ptmx, chunks, quit)
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait(); close(p.done) }()

	var strip crlfStripper
	logErr := false
	write := func(b []byte) {
		if len(b) == 0 {
			return
		}
		if _, err := logf.Write(b); err != nil && !logErr {
			logErr = true
			log.Warn("write node log failed", "path", logPath, "err", err)
			send(api.ExecFrame{Err: fmt.Sprintf("write %s: %v", logPath, err)})
		}
		send(api.ExecFrame{Data: b})
	}
	code := -1
	ctxDone := ctx.Done()
	var drainTimeout <-chan time.Time
	for chunks != nil || waitc != nil {
		select {
		case b, ok := <-chunks:
			if !ok {
				chunks = nil
				continue
			}
			write(strip.strip(b))
		case <-waitc:
			waitc = nil
			code = exitCode(cmd.ProcessState)
			// Output still buffered in the pty is read at once; a
			// process left behind holding the pty is not waited for.
			_ = ptmx.SetReadDeadline(time.Now().Add(drainGrace)) // fails only if not pollable
			drainTimeout = time.After(drainGrace + 250*time.Millisecond)
		case <-drainTimeout:
			chunks = nil // readPTY ends on quit
		case <-ctxDone:
			ctxDone = nil
			log.Info("request cancelled; killing the process group")
			go a.terminate(p)
		}
	}
	write(strip.flush())
	log.Info("process exited", "code", code)
	// The script goes before the exit is told: a head that hears the exit
	// may report the job over at once.
	_ = os.Remove(script)
	send(api.ExecFrame{Exit: &code})
	return nil
}

// readPTY sends what it reads from the pty master until EIO (every
// holder of the tty closed it: end of output), a deadline, or quit.
func readPTY(ptmx *os.File, chunks chan<- []byte, quit <-chan struct{}) {
	defer close(chunks)
	buf := make([]byte, 32<<10)
	for {
		n, err := ptmx.Read(buf)
		if n > 0 {
			select {
			case chunks <- slices.Clone(buf[:n]):
			case <-quit:
				return
			}
		}
		if err != nil {
			return // EIO is the normal end of a pty's output
		}
	}
}

// pollable returns a pty master the runtime poller can interrupt (read
// deadlines, Close during Read). pty.Start's file is blocking: its Fd
// call made it so. The returned file holds a non-blocking duplicate of
// the descriptor; f is closed.
func pollable(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("dup pty master: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("set pty master non-blocking: %w", err)
	}
	nf := os.NewFile(uintptr(fd), f.Name())
	_ = f.Close() // the duplicate keeps the pty open
	return nf, nil
}

// exitCode is the process's exit status, or 128+S when signal S killed it.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return 255
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// writeScript writes req.Script to ~/.sky/sky_<kind>_<job>_*.sh, mode 0700.
func (a *Agent) writeScript(req api.NodeExecRequest) (string, error) {
	dir := filepath.Join(a.cfg.Home, ".sky")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("exec %s of job %d: create %s: %w", req.Kind, req.JobID, dir, err)
	}
	f, err := os.CreateTemp(dir, fmt.Sprintf("sky_%s_%d_*.sh", req.Kind, req.JobID))
	if err != nil {
		return "", fmt.Errorf("exec %s of job %d: create script: %w", req.Kind, req.JobID, err)
	}
	_, werr := f.WriteString(req.Script)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), 0o700)); err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("exec %s of job %d: write script: %w", req.Kind, req.JobID, err)
	}
	return f.Name(), nil
}

// defaultPath is PATH for job processes when the agent was started
// without one (a bare environment over SSH).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// processEnv is the environment of a job process: the agent's own, with
// HOME set to the node's home (and PATH when missing), the node and job
// markers, then req.Env.
func (a *Agent) processEnv(req api.NodeExecRequest) []string {
	set := map[string]string{
		"HOME":        a.cfg.Home,
		api.MarkerEnv: a.cfg.Marker,
	}
	if _, ok := os.LookupEnv("PATH"); !ok {
		set["PATH"] = defaultPath
	}
	jobKV := a.jobEnv(req.JobID)
	k, v, _ := strings.Cut(jobKV, "=")
	set[k] = v
	for k, v := range req.Env {
		set[k] = v
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		_, ok := set[k]
		return ok
	})
	for _, k := range sortedKeys(set) {
		env = append(env, k+"="+set[k])
	}
	return env
}
