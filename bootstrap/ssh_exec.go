package bootstrap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// RemoteError is a command that ran on a node and failed.
type RemoteError struct {
	Status int    // exit status; -1 when killed by a signal
	Signal string // the signal that killed it, if one did
	Stderr string // the end of its standard error
}

func (e *RemoteError) Error() string {
	what := "exit status " + strconv.Itoa(e.Status)
	if e.Signal != "" {
		what = "killed by SIG" + e.Signal
	}
	if e.Stderr == "" {
		return what
	}
	return what + ": " + e.Stderr
}

// Run implements Commander: script runs under /bin/sh -c whatever the
// user's login shell, args as $1, $2, ….
func (s *SSH) Run(ctx context.Context, script string, args ...string) ([]byte, error) {
	out, err := s.run(ctx, script, args...)
	if err != nil {
		return out, fmt.Errorf("%s: %w", s.name, err)
	}
	return out, nil
}

// run runs script in a new session; cancelling ctx kills it.
func (s *SSH) run(ctx context.Context, script string, args ...string) ([]byte, error) {
	return s.runIn(ctx, nil, script, args...)
}

// runIn is run with stdin fed to the remote command.
func (s *SSH) runIn(ctx context.Context, stdin io.Reader, script string, args ...string) ([]byte, error) {
	sess, err := s.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open SSH session: %w", err)
	}
	defer sess.Close()
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 4096}
	sess.Stdout, sess.Stderr = &stdout, stderr
	if stdin != nil {
		sess.Stdin = stdin
	}
	cmd := "/bin/sh -c " + shQuote(script)
	if len(args) > 0 {
		cmd += " sh"
		for _, a := range args {
			cmd += " " + shQuote(a)
		}
	}
	if err := sess.Start(cmd); err != nil {
		return nil, fmt.Errorf("start remote command: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
		<-done
		return stdout.Bytes(), ctx.Err()
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		re := &RemoteError{Status: ee.ExitStatus(), Signal: ee.Signal(), Stderr: strings.TrimSpace(stderr.String())}
		if re.Signal != "" {
			re.Status = -1
		}
		return stdout.Bytes(), re
	}
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("remote command: %w", err)
	}
	return stdout.Bytes(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return string(b.buf) }

// shQuote quotes s for a POSIX shell.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// A user manager that is not lingering is stopped, with every unit in it,
// when the user's last session ends: only a lingering one may run agents.
const probeSystemd = `[ -n "$XDG_RUNTIME_DIR" ] || { XDG_RUNTIME_DIR=/run/user/$(id -u); export XDG_RUNTIME_DIR; }
command -v systemd-run >/dev/null 2>&1 || { echo setsid; exit 0; }
systemctl --user show-environment >/dev/null 2>&1 || { echo setsid; exit 0; }
u=$(id -un)
if [ "$(loginctl show-user "$u" --property=Linger --value 2>/dev/null)" = yes ] || [ -e "/var/lib/systemd/linger/$u" ]; then
  echo systemd
else
  echo setsid
fi`

// detachMode says how agents are started on this node: "systemd" (a
// transient unit of the user's lingering systemd manager) or "setsid".
func (s *SSH) detachMode(ctx context.Context) (string, error) {
	s.mu.Lock()
	mode := s.detach
	s.mu.Unlock()
	if mode != "" {
		return mode, nil
	}
	mode = "setsid"
	if !s.cfg.NoSystemd {
		out, err := s.run(ctx, probeSystemd)
		if err != nil {
			return "", fmt.Errorf("probe for a systemd user manager: %w", err)
		}
		mode = strings.TrimSpace(string(out))
	}
	s.mu.Lock()
	s.detach = mode
	s.mu.Unlock()
	return mode, nil
}

// StartDetached implements Transport. Where the user has a lingering
// systemd manager the process runs as a transient unit
// (sky-coord-agent-<hash of the log path>); elsewhere it gets a session of
// its own with setsid, stdin from /dev/null, output appended to logPath.
func (s *SSH) StartDetached(ctx context.Context, argv, env []string, logPath string) (int, error) {
	if len(argv) == 0 {
		return 0, fmt.Errorf("%s: start: empty command", s.name)
	}
	mode, err := s.detachMode(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s: start %s: %w", s.name, argv[0], err)
	}
	log := s.abs(logPath)
	script := detachedScript(mode, s.home, log, argv, env)
	out, err := s.run(ctx, script)
	if err != nil {
		return 0, fmt.Errorf("%s: start %s (%s): %w", s.name, argv[0], mode, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: start %s (%s): expected a pid, got %q", s.name, argv[0], mode, out)
	}
	return pid, nil
}

// unitName is the transient systemd unit of the process logging to log.
func unitName(log string) string {
	sum := sha256.Sum256([]byte(log))
	return "sky-coord-agent-" + hex.EncodeToString(sum[:6]) + ".service"
}

func detachedScript(mode, home, log string, argv, env []string) string {
	var b strings.Builder
	b.WriteString("cd " + shQuote(home) + " || exit 1\n")
	b.WriteString("mkdir -p \"$(dirname " + shQuote(log) + ")\" || exit 1\n")
	// The log is private (0600) without changing the umask the process
	// itself gets.
	b.WriteString("(umask 077 && : >>" + shQuote(log) + ") || exit 1\n")
	if mode == "systemd" {
		unit := shQuote(unitName(log))
		b.WriteString(`[ -n "$XDG_RUNTIME_DIR" ] || { XDG_RUNTIME_DIR=/run/user/$(id -u); export XDG_RUNTIME_DIR; }` + "\n")
		b.WriteString("systemctl --user stop " + unit + " >/dev/null 2>&1\n")
		b.WriteString("systemctl --user reset-failed " + unit + " >/dev/null 2>&1\n")
		b.WriteString("systemd-run --user --quiet --collect --unit=" + unit +
			" --property=" + shQuote("StandardOutput=append:"+log) +
			" --property=" + shQuote("StandardError=append:"+log) +
			" --working-directory=" + shQuote(home))
		for _, e := range env {
			b.WriteString(" --setenv=" + shQuote(e))
		}
		b.WriteString(" --")
		for _, a := range argv {
			b.WriteString(" " + shQuote(a))
		}
		b.WriteString(" >/dev/null || exit 1\n")
		b.WriteString("pid=$(systemctl --user show --property=MainPID --value " + unit + ")\n")
		b.WriteString(`if [ -z "$pid" ] || [ "$pid" = 0 ]; then echo "the unit ended at once; last lines of its log:" >&2; tail -n 10 ` + shQuote(log) + ` >&2; exit 1; fi` + "\n")
		b.WriteString("echo \"$pid\"\n")
		return b.String()
	}
	// Without job control the background child is no process group
	// leader, so setsid calls setsid(2) in place and $! is the program's
	// own pid (env, setsid and nohup all exec).
	b.WriteString("env")
	for _, e := range env {
		b.WriteString(" " + shQuote(e))
	}
	b.WriteString(" setsid nohup")
	for _, a := range argv {
		b.WriteString(" " + shQuote(a))
	}
	b.WriteString(" </dev/null >>" + shQuote(log) + " 2>&1 &\necho $!\n")
	return b.String()
}

// checkAlive is kill -0 that also fails for a zombie: a process that
// ended but that init has not reaped yet.
const checkAlive = `kill -0 "$1" || exit 1
st=$(cat "/proc/$1/stat" 2>/dev/null) || exit 0
st=${st##*) }
[ "${st%% *}" != Z ] || { echo "process $1 has ended" >&2; exit 1; }`

// Signal implements Transport with kill(1) on the node; signal 0 fails
// for a process that has ended, even if it was not reaped yet.
func (s *SSH) Signal(ctx context.Context, pid int, sig int) error {
	if pid <= 0 {
		return fmt.Errorf("%s: signal: bad pid %d", s.name, pid)
	}
	script, args := "kill -"+strconv.Itoa(sig)+" "+strconv.Itoa(pid), []string(nil)
	if sig == 0 {
		script, args = checkAlive, []string{strconv.Itoa(pid)}
	}
	if _, err := s.run(ctx, script, args...); err != nil {
		return fmt.Errorf("%s: kill -%d %d: %w", s.name, sig, pid, err)
	}
	return nil
}
