package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func validateCmd() *cobra.Command {
	var tf taskFlags
	var output string
	cmd := &cobra.Command{
		Use:   "validate [flags] TASK.yaml...",
		Short: "Check task files; print every error as FILE:LINE:COLUMN: message",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := 0
			for _, path := range args {
				file, err := loadTasks(path, &tf)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					failed++
					continue
				}
				if output == "yaml" {
					data, err := file.YAML()
					if err != nil {
						return err
					}
					os.Stdout.Write(data)
					continue
				}
				fmt.Printf("%s: valid (%d task(s))\n", path, len(file.Tasks))
			}
			if failed > 0 {
				return &exitError{code: 2, msg: fmt.Sprintf("%d of %d file(s) invalid", failed, len(args))}
			}
			return nil
		},
	}
	tf.add(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "print the normalized task: yaml")
	return cmd
}
