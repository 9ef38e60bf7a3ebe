package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// agentStopGrace is how long a stopped agent gets to end its jobs and
// exit before SIGKILL.
const agentStopGrace = 5 * time.Second

// footprint is what bootstrap and the agent put under a node's home.
var footprint = []string{Dir, "sky_workdir", "sky_logs", ".sky/blobs", ".sky/private_mounts.json"}

// StopAgent stops the agent whose pid bootstrap recorded on the node, if
// it still runs: SIGTERM (the agent stops its jobs), then SIGKILL after a
// grace period. Files are kept, so Ensure can start it again.
func StopAgent(ctx context.Context, t Transport) error {
	return stopRecorded(ctx, t)
}

// Stop stops the node's agent, then (on transports that run commands)
// every process still carrying the node's marker: job processes that left
// the agent's process group. Files are kept.
func Stop(ctx context.Context, t Transport) error {
	marker := t.Home()
	if data, err := t.ReadFile(ctx, ConfigPath); err == nil {
		var cfg api.AgentConfig
		if json.Unmarshal(data, &cfg) == nil && cfg.Marker != "" {
			marker = cfg.Marker
		}
	}
	if err := stopRecorded(ctx, t); err != nil {
		return fmt.Errorf("stop agent: %w", err)
	}
	if c, ok := t.(Commander); ok {
		if _, err := c.Run(ctx, killMarked, api.MarkerEnv+"="+marker, graceTenths()); err != nil {
			return fmt.Errorf("stop the node's job processes: %w", err)
		}
	}
	return nil
}

// Remove undoes bootstrap on a node that stays (an ssh-pool machine): it
// stops everything as Stop does and removes ~/.sky-coord-agent,
// ~/sky_workdir, ~/sky_logs and sky-coord's files under ~/.sky. Nothing
// else on the machine is touched. It is idempotent.
func Remove(ctx context.Context, t Transport) error {
	if err := Stop(ctx, t); err != nil {
		return err
	}
	if c, ok := t.(Commander); ok {
		if _, err := c.Run(ctx, removeFootprint, t.Home()); err != nil {
			return fmt.Errorf("remove sky-coord's files: %w", err)
		}
		return nil
	}
	r, ok := t.(Remover)
	if !ok {
		return errors.New("this transport cannot remove files")
	}
	for _, p := range footprint {
		if err := r.RemoveAll(ctx, p); err != nil {
			return fmt.Errorf("remove sky-coord's files: %w", err)
		}
	}
	return nil
}

func graceTenths() string { return strconv.Itoa(int(agentStopGrace / (100 * time.Millisecond))) }

// killMarked ends every process whose environment holds the entry $1:
// SIGTERM, then SIGKILL to those left after $2 tenths of a second.
const killMarked = `m=$1 grace=$2
pids() {
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$$" ] && continue
    grep -qzxF -- "$m" "$d/environ" 2>/dev/null && echo "$p"
  done
}
left=$(pids)
[ -n "$left" ] || exit 0
kill -TERM $left 2>/dev/null
i=0
while [ "$i" -lt "$grace" ]; do
  left=$(pids)
  [ -n "$left" ] || exit 0
  sleep 0.1
  i=$((i+1))
done
kill -KILL $left 2>/dev/null
exit 0`

// removeFootprint removes what sky-coord put under the home $1.
const removeFootprint = `cd "$1" || exit 1
rm -rf -- .sky-coord-agent sky_workdir sky_logs .sky/blobs .sky/private_mounts.json
rm -f -- .sky/sky_setup_*.sh .sky/sky_run_*.sh
rmdir .sky 2>/dev/null
exit 0`

// stopAgentScript stops pid $1 when it is an agent (its environment has
// the marker variable), waiting $2 tenths of a second before SIGKILL. A
// zombie counts as ended: its parent may be slow to reap it.
const stopAgentScript = `pid=$1 grace=$2
alive() {
  kill -0 "$pid" 2>/dev/null || return 1
  st=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
  st=${st##*) }
  [ "${st%% *}" != Z ]
}
alive || exit 0
if [ -r "/proc/$pid/environ" ] && ! grep -qz '^` + api.MarkerEnv + `=' "/proc/$pid/environ" 2>/dev/null; then
  exit 0
fi
kill -TERM "$pid" 2>/dev/null
i=0
while [ "$i" -lt "$grace" ]; do
  alive || exit 0
  sleep 0.1
  i=$((i+1))
done
kill -KILL "$pid" 2>/dev/null
exit 0`

// stopRecorded stops the agent whose pid bootstrap recorded, if it runs.
func stopRecorded(ctx context.Context, t Transport) error {
	data, err := t.ReadFile(ctx, PIDPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return nil
	}
	if c, ok := t.(Commander); ok {
		_, err := c.Run(ctx, stopAgentScript, strconv.Itoa(pid), graceTenths())
		return err
	}
	if t.Signal(ctx, pid, 0) != nil {
		return nil
	}
	_ = t.Signal(ctx, pid, int(syscall.SIGTERM))
	deadline := time.Now().Add(agentStopGrace)
	for time.Now().Before(deadline) {
		if t.Signal(ctx, pid, 0) != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	_ = t.Signal(ctx, pid, int(syscall.SIGKILL))
	return nil
}
