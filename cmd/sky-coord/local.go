package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sky-coord/sky-coord/providers/local"
)

func localCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "local", Short: "Rehearse failures on local clusters"}
	var node int
	kill := &cobra.Command{
		Use:   "kill CLUSTER --node RANK",
		Short: "Kill a local node as a preemption would (its agent and every process on it)",
		Long: `Kill a node of a local cluster as a preemption would: its agent and every
process on it die at once. The other nodes notice by gossip within seconds;
a job running on the node ends FAILED naming it, and the cluster shows INIT
(degraded) until ` + "`sky-coord start CLUSTER`" + ` brings the node back.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := connect(ctx)
			if err != nil {
				return err
			}
			cl, err := c.Cluster(ctx, args[0])
			if err != nil {
				return err
			}
			if cl.Cloud != local.Name {
				return &exitError{code: 2, msg: fmt.Sprintf("cluster %s runs on %s; `local kill` works on local clusters only", cl.Name, cl.Cloud)}
			}
			if node < 0 || node >= len(cl.Nodes) {
				return &exitError{code: 2, msg: fmt.Sprintf("cluster %s has nodes 0 to %d; there is no node %d", cl.Name, len(cl.Nodes)-1, node)}
			}
			if err := local.New(filepath.Join(skyHome(), "local")).Kill(ctx, cl.Name, node); err != nil {
				return err
			}
			fmt.Printf("Killed node %d of %s (%s) as a preemption would. The other nodes notice within seconds; `sky-coord start %s` brings it back.\n",
				node, cl.Name, cl.Nodes[node].IP, cl.Name)
			return nil
		},
	}
	kill.Flags().IntVar(&node, "node", -1, "the node's rank (0 is the head)")
	_ = kill.MarkFlagRequired("node")
	cmd.AddCommand(kill)
	return cmd
}
