package agent

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/ptystream"
)

// handleShell serves `sky-coord ssh`: a login shell (or `bash -lc CMD`)
// under a pty on this node, over an upgraded connection (see ptystream).
// Query: rows, cols, term, and cmd (the command line; empty for a shell).
func (a *Agent) handleShell(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rows, _ := strconv.Atoi(q.Get("rows"))
	cols, _ := strconv.Atoi(q.Get("cols"))
	if rows <= 0 || rows > 10000 {
		rows = 24
	}
	if cols <= 0 || cols > 10000 {
		cols = 80
	}
	argv := []string{"/bin/bash", "-l"}
	if c := q.Get("cmd"); c != "" {
		argv = []string{"/bin/bash", "-lc", c}
	}
	termName := q.Get("term")
	if termName == "" {
		termName = "xterm-256color"
	}
	env := a.shellEnv(termName)
	cmd, err := a.nodeCommand(argv, env)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: uint16(rows), Cols: uint16(cols)})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	conn, err := ptystream.Accept(w, r)
	if err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		ptmx.Close()
		return
	}
	a.serveShell(conn, cmd, ptmx)
}

func (a *Agent) shellEnv(termName string) []string {
	set := map[string]string{"HOME": a.cfg.Home, api.MarkerEnv: a.cfg.Marker, "TERM": termName}
	if _, ok := os.LookupEnv("PATH"); !ok {
		set["PATH"] = defaultPath
	}
	var env []string
	for _, kv := range os.Environ() {
		k := kv
		for i := range kv {
			if kv[i] == '=' {
				k = kv[:i]
				break
			}
		}
		if _, ok := set[k]; !ok {
			env = append(env, kv)
		}
	}
	for _, k := range sortedKeys(set) {
		env = append(env, k+"="+set[k])
	}
	return env
}

// serveShell pumps one session until its process exits or the client
// goes away; either way the process group is gone when it returns.
func (a *Agent) serveShell(conn *ptystream.Conn, cmd *exec.Cmd, ptmx *os.File) {
	defer conn.Close()
	pid := cmd.Process.Pid
	log := a.log.With("shell", pid)
	log.Info("shell started", "argv", cmd.Args)
	var wmu sync.Mutex
	send := func(k ptystream.Kind, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return ptystream.Write(conn, k, p)
	}
	// Client → pty.
	clientGone := make(chan struct{})
	go func() {
		defer close(clientGone)
		for {
			k, p, err := ptystream.Read(conn)
			if err != nil {
				return
			}
			switch k {
			case ptystream.Data:
				if _, err := ptmx.Write(p); err != nil {
					return
				}
			case ptystream.Resize:
				if rows, cols, err := ptystream.ParseResize(p); err == nil {
					_ = pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols})
				}
			case ptystream.EOF:
				_, _ = ptmx.Write([]byte{4}) // ^D: end of input for the terminal
			}
		}
	}()
	// pty → client.
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		buf := make([]byte, 32<<10)
		for {
			n, err := ptmx.Read(buf)
			if n > 0 {
				if send(ptystream.Data, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan int, 1)
	go func() {
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
			if code < 0 {
				code = 128 + int(syscall.SIGKILL)
			}
		}
		exited <- code
	}()
	select {
	case code := <-exited:
		// Output still in the pty: read it until it drains.
		select {
		case <-outDone:
		case <-time.After(drainGrace):
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL) // what the shell left behind
		_ = send(ptystream.Exit, ptystream.ExitPayload(code))
		log.Info("shell exited", "code", code)
	case <-clientGone:
		// The user went away: hang up as a terminal would, then make sure.
		_ = syscall.Kill(-pid, syscall.SIGHUP)
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-exited
		}
		log.Info("shell client went away")
	case <-a.ctx.Done():
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	ptmx.Close()
}
