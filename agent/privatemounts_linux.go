package agent

import (
	"os"
	"strconv"
	"syscall"
)

// NSExecIDsEnv carries "UID:GID" to `sky-agent __nsexec` when the agent is
// not root: the job process then starts as root of a new user namespace
// (mapped to the agent's user), which may mount in its new mount
// namespace, and __nsexec runs the shell in a nested user namespace that
// maps the agent's user back, so the job runs as that user.
const NSExecIDsEnv = "SKY_COORD_NSEXEC_IDS"

// newMountNamespace starts a job process in a mount namespace of its own
// (Go makes "/" private there, so nothing propagates back). Without root
// it needs an unprivileged user namespace, where the kernel allows one.
func newMountNamespace() (*syscall.SysProcAttr, []string, error) {
	if os.Geteuid() == 0 {
		return &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}, nil, nil
	}
	uid, gid := os.Getuid(), os.Getgid()
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
	}, []string{NSExecIDsEnv + "=" + strconv.Itoa(uid) + ":" + strconv.Itoa(gid)}, nil
}
