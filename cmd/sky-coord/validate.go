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
				// Values left to fill in (null envs, placeholders) are
				// warnings here; launch and exec refuse them.
				file, err := loadTasks(path, &tf, true)
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
					if len(args) > 1 {
						fmt.Printf("# %s\n", path)
					}
					os.Stdout.Write(data)
					if len(args) > 1 {
						fmt.Println("---")
					}
					continue
				}
				summary := fmt.Sprintf("%s: valid (%d task(s))", path, len(file.Tasks))
				if n := len(file.Warnings); n > 0 {
					summary += fmt.Sprintf(", %d warning(s)", n)
				}
				fmt.Println(summary)
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
