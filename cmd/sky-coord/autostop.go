package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sky-coord/sky-coord/api"
)

func autostopCmd() *cobra.Command {
	var idle int
	var down, cancel, all bool
	cmd := &cobra.Command{
		Use:   "autostop [CLUSTER...]",
		Short: "Stop (or tear down) clusters once they have been idle for a while",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if !all && len(args) == 0 {
				return &exitError{code: 2, msg: "name the clusters, or pass -a for all"}
			}
			if !cancel && idle < 0 {
				return &exitError{code: 2, msg: "give -i MINUTES (0 or more), or --cancel"}
			}
			c, err := connect(ctx)
			if err != nil {
				return err
			}
			names, err := clusterNames(ctx, c, args, all)
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range names {
				if err := c.SetAutostop(ctx, name, api.AutostopRequest{IdleMinutes: idle, Down: down, Cancel: cancel}); err != nil {
					errs = append(errs, fmt.Errorf("autostop %s: %w", name, err))
					continue
				}
				switch {
				case cancel:
					fmt.Printf("Autostop of %s cancelled.\n", name)
				case down:
					fmt.Printf("%s will be torn down after %d idle minute(s).\n", name, idle)
				default:
					fmt.Printf("%s will be stopped after %d idle minute(s).\n", name, idle)
				}
			}
			return errors.Join(errs...)
		},
	}
	f := cmd.Flags()
	f.IntVarP(&idle, "idle-minutes", "i", -1, "idle minutes (no unfinished job) before stopping")
	f.BoolVar(&down, "down", false, "tear the cluster down instead of stopping it")
	f.BoolVar(&cancel, "cancel", false, "cancel the autostop")
	f.BoolVarP(&all, "all", "a", false, "every cluster")
	f.BoolP("yes", "y", false, "do not ask for confirmation")
	return cmd
}
