package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Private file mounts. Nodes that share one machine (the local provider)
// cannot each own /data. With AgentConfig.PrivateMounts, a file_mounts
// destination outside the home is kept in the node's own
// ~/.sky/file_mounts/<dst>, and every job process runs in its own mount
// namespace where that copy is bind-mounted at <dst> (see nsexec). On the
// machine itself <dst> is only an empty mountpoint, shared by the nodes that
// use it through a claim registry, and removed when the last one lets go.

// privateMount is one absolute destination served from the node's copy.
type privateMount struct {
	Dst  string `json:"dst"`
	File bool   `json:"file,omitempty"`
}

// NSExecEnv carries the bind mounts (JSON [][2]string{src, dst}) from the
// agent to `sky-agent __nsexec`, which performs them in the new mount
// namespace and execs the job's shell.
const NSExecEnv = "SKY_COORD_NSEXEC_BINDS"

// privateMounts guards the node's registry file.
var privateMountsMu sync.Mutex

func (a *Agent) privateRegistry() string {
	return filepath.Join(a.cfg.Home, ".sky", "private_mounts.json")
}

// privatePath is where the node keeps the content of dst.
func (a *Agent) privatePath(dst string) string {
	return filepath.Join(a.cfg.Home, ".sky", "file_mounts", strings.TrimPrefix(filepath.Clean(dst), "/"))
}

func (a *Agent) loadPrivateMounts() ([]privateMount, error) {
	data, err := os.ReadFile(a.privateRegistry())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ms []privateMount
	if err := json.Unmarshal(data, &ms); err != nil {
		return nil, fmt.Errorf("read %s: %w", a.privateRegistry(), err)
	}
	return ms, nil
}

// addPrivateMount records dst for the node and makes sure its mountpoint
// exists on the machine, claimed by this node.
func (a *Agent) addPrivateMount(dst string, file bool) error {
	privateMountsMu.Lock()
	defer privateMountsMu.Unlock()
	ms, err := a.loadPrivateMounts()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(ms, func(m privateMount) bool { return m.Dst == dst }) {
		ms = append(ms, privateMount{Dst: dst, File: file})
		data, _ := json.Marshal(ms)
		if err := os.MkdirAll(filepath.Dir(a.privateRegistry()), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(a.privateRegistry(), data, 0o600); err != nil {
			return err
		}
	}
	return claimMountpoint(dst, file, a.cfg.Marker)
}

// reclaimPrivateMounts re-creates and claims the node's mountpoints (at
// agent start: a stopped cluster's may have been removed).
func (a *Agent) reclaimPrivateMounts() error {
	ms, err := a.loadPrivateMounts()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if err := claimMountpoint(m.Dst, m.File, a.cfg.Marker); err != nil {
			return err
		}
	}
	return nil
}

// releasePrivateMounts lets go of the node's mountpoints (at agent exit).
func (a *Agent) releasePrivateMounts() {
	ms, err := a.loadPrivateMounts()
	if err != nil {
		a.log.Warn("release private mounts", "err", err)
		return
	}
	for _, m := range ms {
		if err := releaseMountpoint(m.Dst, a.cfg.Marker); err != nil {
			a.log.Warn("release private mount", "dst", m.Dst, "err", err)
		}
	}
}

// binds lists the (node copy, destination) pairs for a job process.
func (a *Agent) binds() ([][2]string, error) {
	if !a.cfg.PrivateMounts {
		return nil, nil
	}
	privateMountsMu.Lock()
	ms, err := a.loadPrivateMounts()
	privateMountsMu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make([][2]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, [2]string{a.privatePath(m.Dst), m.Dst})
	}
	// Parents first, so a mount inside another one lands on top of it.
	slices.SortFunc(out, func(x, y [2]string) int { return strings.Count(x[1], "/") - strings.Count(y[1], "/") })
	return out, nil
}

// jobCommand is the command that runs a job script: bash, or, when the
// node has private mounts, `sky-agent __nsexec bash` in a new mount
// namespace.
func (a *Agent) jobCommand(script string, env []string) (*exec.Cmd, error) {
	return a.nodeCommand([]string{"/bin/bash", script}, env)
}

// nodeCommand is argv run as the node runs jobs: in its home, with the
// node's private view of file_mounts when it has one.
func (a *Agent) nodeCommand(argv, env []string) (*exec.Cmd, error) {
	binds, err := a.binds()
	if err != nil {
		return nil, err
	}
	if len(binds) == 0 {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir, cmd.Env = a.cfg.Home, env
		return cmd, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the agent binary for private mounts: %w", err)
	}
	data, _ := json.Marshal(binds)
	cmd := exec.Command(self, append([]string{"__nsexec"}, argv...)...)
	cmd.Dir, cmd.Env = a.cfg.Home, append(env, NSExecEnv+"="+string(data))
	attr, extraEnv, err := newMountNamespace()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = attr
	cmd.Env = append(cmd.Env, extraEnv...)
	return cmd, nil
}
