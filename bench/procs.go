package main

import (
	"os/exec"
	"syscall"
)

// tracked is a child process the run's cleanup kills if it still runs
// (with its process group: rclone, ssh).
type tracked struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	kill func()
}

// startTracked starts c in a process group of its own.
func startTracked(c *exec.Cmd) (*tracked, error) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		return nil, err
	}
	p := &tracked{cmd: c, done: make(chan struct{})}
	go func() {
		p.err = c.Wait()
		close(p.done)
	}()
	p.kill = atCleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p, nil
}

// exited is closed when the process has ended.
func (p *tracked) exited() <-chan struct{} { return p.done }

// wait waits for the process to end and returns its exit error.
func (p *tracked) wait() error {
	<-p.done
	p.kill()
	return p.err
}

// stop kills the process group if the process still runs, and waits.
func (p *tracked) stop() { p.kill() }
