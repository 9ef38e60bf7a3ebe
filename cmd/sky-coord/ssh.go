package main

import (
	"errors"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sky-coord/sky-coord/client"
	"github.com/sky-coord/sky-coord/ptystream"
)

func sshCmd() *cobra.Command {
	var node int
	cmd := &cobra.Command{
		Use:   "ssh CLUSTER [--node RANK] [-- COMMAND...]",
		Short: "Open a shell on a node (the head by default), or run a command there, under a pty",
		Long: `Open an interactive login shell on a node of an UP cluster, through its
agent (no SSH port or key needed), or run COMMAND there as ` + "`bash -lc`" + ` would.
The session follows terminal resizes; the command's exit code is ssh's.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := connect(ctx)
			if err != nil {
				return err
			}
			o := client.ShellOptions{Node: node, Term: os.Getenv("TERM"), Command: strings.Join(args[1:], " ")}
			tty := isTerminal(os.Stdin)
			if tty {
				if cols, rows, err := term.GetSize(int(os.Stdin.Fd())); err == nil {
					o.Rows, o.Cols = rows, cols
				}
			}
			conn, err := c.Shell(ctx, args[0], o)
			if err != nil {
				return err
			}
			defer conn.Close()
			if tty {
				old, err := term.MakeRaw(int(os.Stdin.Fd()))
				if err == nil {
					defer term.Restore(int(os.Stdin.Fd()), old)
				}
			}
			return runSession(conn, os.Stdin, os.Stdout, tty)
		},
	}
	cmd.Flags().IntVar(&node, "node", 0, "the node's rank (0 is the head)")
	return cmd
}

// runSession pumps stdin to the session and its output to stdout until
// the remote process exits; the exit code becomes the command's.
func runSession(conn *ptystream.Conn, in *os.File, out io.Writer, tty bool) error {
	var wmu sync.Mutex
	send := func(k ptystream.Kind, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return ptystream.Write(conn, k, p)
	}
	if tty {
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if cols, rows, err := term.GetSize(int(in.Fd())); err == nil {
					_ = send(ptystream.Resize, ptystream.ResizePayload(uint16(rows), uint16(cols)))
				}
			}
		}()
	}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 && send(ptystream.Data, buf[:n]) != nil {
				return
			}
			if err != nil {
				_ = send(ptystream.EOF, nil)
				return
			}
		}
	}()
	for {
		k, p, err := ptystream.Read(conn)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return &exitError{code: 255, msg: "sky-coord ssh: the session ended without an exit code (the node or its agent went away)"}
			}
			return &exitError{code: 255, msg: "sky-coord ssh: " + err.Error()}
		}
		switch k {
		case ptystream.Data:
			if _, err := out.Write(p); err != nil {
				return err
			}
		case ptystream.Exit:
			code, err := ptystream.ParseExit(p)
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		}
	}
}
