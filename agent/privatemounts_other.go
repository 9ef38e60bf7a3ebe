//go:build !linux

package agent

import (
	"errors"
	"syscall"
)

// NSExecIDsEnv: see the Linux twin.
const NSExecIDsEnv = "SKY_COORD_NSEXEC_IDS"

// newMountNamespace: mount namespaces are Linux's.
func newMountNamespace() (*syscall.SysProcAttr, []string, error) {
	return nil, nil, errors.New("private file mounts need Linux mount namespaces")
}
