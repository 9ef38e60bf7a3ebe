package local

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
)

// privateMountsSupported: root can always make a mount namespace; other
// users need the kernel to allow an unprivileged user namespace, which a
// throwaway `true` tells once.
var privateMountsSupported = sync.OnceValue(func() bool {
	if os.Geteuid() == 0 {
		return true
	}
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	return cmd.Run() == nil
})

// mountpointCreatable reports why dst could not serve as a mountpoint:
// it must exist, or its nearest existing parent must be writable.
func mountpointCreatable(dst string) error {
	if os.Geteuid() == 0 {
		return nil
	}
	if _, err := os.Lstat(dst); err == nil {
		return nil
	}
	p := dst
	for {
		p = filepath.Dir(p)
		if _, err := os.Lstat(p); err == nil {
			break
		}
	}
	if err := syscall.Access(p, 2 /* W_OK */); err != nil {
		return fmt.Errorf("it does not exist and %s is not writable by this user", p)
	}
	return nil
}
