package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/sky-coord/sky-coord/agent"
)

// nsexec runs inside a job process's own mount namespace (the agent
// started it with CLONE_NEWNS): it bind-mounts the node's copies of its
// file_mounts at their destinations, then becomes the job's shell.
func nsexec(args []string) error {
	var binds [][2]string
	if err := json.Unmarshal([]byte(os.Getenv(agent.NSExecEnv)), &binds); err != nil {
		return fmt.Errorf("__nsexec: read %s: %w", agent.NSExecEnv, err)
	}
	if err := os.Unsetenv(agent.NSExecEnv); err != nil {
		return err
	}
	// Nothing mounted here may reach the machine's namespace.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("__nsexec: make / private: %w", err)
	}
	for _, b := range binds {
		if err := syscall.Mount(b[0], b[1], "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("file mount %s: bind the node's copy %s: %w", b[1], b[0], err)
		}
	}
	if len(args) == 0 {
		return fmt.Errorf("__nsexec: no command")
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, args, os.Environ())
}
