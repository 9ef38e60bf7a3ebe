package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/sky-coord/sky-coord/agent"
)

// nsexec runs inside a job process's own mount namespace (the agent
// started it with CLONE_NEWNS, and CLONE_NEWUSER when not root): it
// bind-mounts the node's copies of its file_mounts at their destinations,
// then becomes the job's shell — or, in a user namespace, starts the shell
// as the agent's own user in a nested one and passes on its exit status.
func nsexec(args []string) error {
	var binds [][2]string
	if err := json.Unmarshal([]byte(os.Getenv(agent.NSExecEnv)), &binds); err != nil {
		return fmt.Errorf("__nsexec: read %s: %w", agent.NSExecEnv, err)
	}
	ids := os.Getenv(agent.NSExecIDsEnv)
	_ = os.Unsetenv(agent.NSExecEnv)
	_ = os.Unsetenv(agent.NSExecIDsEnv)
	if len(args) == 0 {
		return errors.New("__nsexec: no command")
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
	path, err := exec.LookPath(args[0])
	if err != nil {
		return err
	}
	if ids == "" {
		return syscall.Exec(path, args, os.Environ())
	}
	return runAsUser(path, args, ids)
}

// runAsUser starts the shell in a nested user namespace that maps the
// agent's user back (a Go process has threads, so it cannot unshare its
// own), stays its parent in the job's process group, and exits as it did.
func runAsUser(path string, args []string, ids string) error {
	uidS, gidS, _ := strings.Cut(ids, ":")
	uid, err1 := strconv.Atoi(uidS)
	gid, err2 := strconv.Atoi(gidS)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("__nsexec: bad %s %q", agent.NSExecIDsEnv, ids)
	}
	cmd := exec.Command(path, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: uid, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: gid, HostID: 0, Size: 1}},
	}
	// Signals sent to this process alone go to the shell too; the job's
	// process group gets them anyway.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("__nsexec: start the job's shell as uid %d: %w", uid, err)
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			signal.Reset()
			_ = syscall.Kill(os.Getpid(), ws.Signal())
		}
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		return err
	}
	os.Exit(0)
	return nil
}
