package agent

import "syscall"

// newMountNamespace starts a job process in a mount namespace of its own
// (Go makes "/" private there, so nothing propagates back).
func newMountNamespace() (*syscall.SysProcAttr, error) {
	return &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}, nil
}
