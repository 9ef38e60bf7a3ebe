package main

import (
	"fmt"
	"net"
	"os"

	"github.com/spf13/cobra"
)

func sshKeysCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "ssh-keys",
		Short: "SSH host keys pinned on first use (ssh pools)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			keys, err := c.HostKeys(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(keys)
			}
			if len(keys) == 0 {
				fmt.Println("No host keys pinned yet.")
				return nil
			}
			var rows [][]string
			for _, k := range keys {
				rows = append(rows, []string{k.Host, k.Key})
			}
			table(os.Stdout, []string{"HOST", "KEY"}, rows)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.AddCommand(&cobra.Command{
		Use:   "forget HOST[:PORT]",
		Short: "Forget a host's pinned key: the next connection trusts and pins the key it sees",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			host := args[0]
			if _, _, err := net.SplitHostPort(host); err != nil {
				host = net.JoinHostPort(host, "22")
			}
			if err := c.ForgetHostKey(cmd.Context(), host); err != nil {
				return err
			}
			fmt.Printf("Forgot the host key of %s; the next connection pins the key it is shown.\n", host)
			return nil
		},
	})
	return cmd
}
