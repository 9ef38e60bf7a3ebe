//go:build !linux

package agent

import (
	"errors"
	"syscall"
)

// newMountNamespace: mount namespaces are Linux's.
func newMountNamespace() (*syscall.SysProcAttr, error) {
	return nil, errors.New("private file mounts need Linux mount namespaces")
}
