package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func storageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "storage", Short: "Buckets used by file_mounts storage objects"}
	var output string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the buckets sky-coord knows of",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			sts, err := c.Storages(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(sts)
			}
			if len(sts) == 0 {
				fmt.Println("No existing storage.")
				return nil
			}
			var rows [][]string
			for _, s := range sts {
				owner := "external"
				if s.Managed {
					owner = "sky-coord"
				}
				persist := "yes"
				if !s.Persistent {
					persist = "no"
				}
				clusters := strings.Join(s.Clusters, ",")
				if clusters == "" {
					clusters = "-"
				}
				rows = append(rows, []string{s.Name, s.URL, ago(s.CreatedAt, time.Now()), owner, persist, clusters})
			}
			table(os.Stdout, []string{"NAME", "URL", "CREATED", "CREATED_BY", "PERSISTENT", "CLUSTERS"}, rows)
			return nil
		},
	}
	ls.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	del := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete buckets sky-coord created (others are only forgotten)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range args {
				deleted, err := c.DeleteStorage(cmd.Context(), name)
				if err != nil {
					errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
					continue
				}
				if deleted {
					fmt.Printf("%s Deleted bucket %s.\n", green("✓"), name)
				} else {
					fmt.Printf("%s Forgot %s (sky-coord did not create it, so the bucket stays).\n", green("✓"), name)
				}
			}
			return errors.Join(errs...)
		},
	}
	del.Flags().BoolP("yes", "y", false, "do not ask for confirmation")
	cmd.AddCommand(ls, del)
	return cmd
}
