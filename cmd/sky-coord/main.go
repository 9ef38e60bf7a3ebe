// Command sky-coord is the sky-coord CLI and coordinator server: it runs
// SkyPilot task files on machines it provisions itself.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "sky-coord",
		Short:         "Run SkyPilot task files on nodes sky-coord provisions itself",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(
		launchCmd(), execCmd(), statusCmd(), queueCmd(), logsCmd(), cancelCmd(),
		lifecycleCmd("stop", "Stop clusters (their nodes and files are kept)"),
		lifecycleCmd("start", "Start stopped clusters"),
		lifecycleCmd("down", "Tear clusters down: every process, directory and instance is removed"),
		validateCmd(), serverCmd(), showGPUsCmd(), gpusCmd(), checkCmd(), catalogCmd(), sshCmd(), localCmd(), sshKeysCmd(), storageCmd(), autostopCmd(),
		watchDaemonCmd(),
	)
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := rootCmd().ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(os.Stderr, ee.msg)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	os.Exit(1)
}
