package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/client"
)

// Exit codes of launch, exec and logs, as SkyPilot's JobExitCode.
const (
	exitSucceeded   = 0
	exitFailed      = 100
	exitNotFinished = 101
	exitCancelled   = 103
)

func jobExitCode(s api.JobStatus) int {
	switch s {
	case api.JobSucceeded:
		return exitSucceeded
	case api.JobCancelled:
		return exitCancelled
	case api.JobFailed, api.JobFailedSetup, api.JobFailedDriver:
		return exitFailed
	}
	return exitNotFinished
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

func launchCmd() *cobra.Command {
	var tf taskFlags
	var cluster string
	var yes, detach, down, noSetup bool
	cmd := &cobra.Command{
		Use:   "launch [flags] TASK.yaml",
		Short: "Launch a cluster (or reuse one) and run a task on it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := loadTask(args[0], &tf)
			if err != nil {
				return err
			}
			if cluster == "" {
				cluster = generatedName()
			}
			if !yes && isTerminal(os.Stdin) && isTerminal(os.Stdout) {
				fmt.Printf("Launching cluster %q: %d node(s), %s. Proceed? [Y/n] ", cluster, t.NumNodes, infraOf(t.Resources.Cloud))
				line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
				if a := strings.TrimSpace(strings.ToLower(line)); a != "" && a != "y" && a != "yes" {
					return &exitError{code: 1, msg: "Aborted."}
				}
			}
			c, err := connect(ctx)
			if err != nil {
				return err
			}
			start := time.Now()
			blobs, err := uploadFiles(ctx, c, t, true)
			if err != nil {
				return err
			}
			after := lastEventSeq(ctx, c, cluster)
			resp, err := c.Launch(ctx, api.LaunchRequest{Cluster: cluster, Task: t, Blobs: blobs, User: currentUser(), Down: down, NoSetup: noSetup})
			if err != nil {
				return err
			}
			fmt.Printf("%s Cluster %s, job %d submitted.\n", dim("⚙︎"), bold(cluster), resp.JobID)
			if err := waitUp(ctx, c, cluster, after, start); err != nil {
				return err
			}
			if detach {
				printSubmitted(cluster, resp.JobID)
				return nil
			}
			return followJob(ctx, c, cluster, resp.JobID)
		},
	}
	tf.add(cmd)
	f := cmd.Flags()
	f.StringVarP(&cluster, "cluster", "c", "", "cluster name (default: generated)")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVarP(&detach, "detach-run", "d", false, "return once the job is submitted; do not stream its logs")
	f.BoolVar(&down, "down", false, "tear the cluster down when the job ends")
	f.BoolVar(&noSetup, "no-setup", false, "skip the setup step")
	f.IntVar(&tf.numNodes, "num-nodes", 0, "override the task's num_nodes")
	return cmd
}

func execCmd() *cobra.Command {
	var tf taskFlags
	var detach bool
	cmd := &cobra.Command{
		Use:   "exec [flags] CLUSTER TASK.yaml",
		Short: "Run a task on an UP cluster: re-syncs the workdir, skips setup",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cluster := args[0]
			t, err := loadTask(args[1], &tf)
			if err != nil {
				return err
			}
			c, err := connect(ctx)
			if err != nil {
				return err
			}
			blobs, err := uploadFiles(ctx, c, t, false)
			if err != nil {
				return err
			}
			resp, err := c.Exec(ctx, cluster, api.ExecRequest{Task: t, Blobs: blobs, User: currentUser()})
			if err != nil {
				return err
			}
			if detach {
				printSubmitted(cluster, resp.JobID)
				return nil
			}
			fmt.Printf("%s Job %d submitted to cluster %s.\n", dim("⚙︎"), resp.JobID, bold(cluster))
			return followJob(ctx, c, cluster, resp.JobID)
		},
	}
	tf.add(cmd)
	cmd.Flags().BoolVarP(&detach, "detach-run", "d", false, "return once the job is submitted")
	cmd.Flags().IntVar(&tf.numNodes, "num-nodes", 0, "override the task's num_nodes")
	return cmd
}

// printSubmitted tells a detached user where the job is and how to reach it.
func printSubmitted(cluster string, id int64) {
	fmt.Printf("Job submitted, ID: %d\n", id)
	fmt.Printf("%s To stream its logs:  sky-coord logs %s %d\n", dim("├──"), cluster, id)
	fmt.Printf("%s To see the queue:    sky-coord queue %s\n", dim("├──"), cluster)
	fmt.Printf("%s To cancel it:        sky-coord cancel %s %d\n", dim("└──"), cluster, id)
}

func generatedName() string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	u := strings.ToLower(currentUser())
	if u == "" {
		u = "user"
	}
	return "sky-" + hex.EncodeToString(b) + "-" + u
}

func infraOf(cloud string) string {
	if cloud == "" {
		return "local"
	}
	return cloud
}

func lastEventSeq(ctx context.Context, c *client.Client, cluster string) uint64 {
	evs, err := c.Events(ctx, cluster, 0, 0)
	if err != nil || len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

// waitUp prints the cluster's progress until it is UP, or fails with the
// launch error.
func waitUp(ctx context.Context, c *client.Client, cluster string, after uint64, start time.Time) error {
	for {
		cl, err := c.Cluster(ctx, cluster)
		if err != nil {
			return err
		}
		evs, err := c.Events(ctx, cluster, after, 0)
		if err != nil {
			return err
		}
		for _, e := range evs {
			fmt.Printf("%s %s\n", dim("⚙︎"), e.Message)
			after = e.Seq
		}
		if cl.Error != "" {
			return &exitError{code: 1, msg: fmt.Sprintf("launch of cluster %s failed: %s\nFix the cause, then run `sky-coord launch` again, or `sky-coord down %s` to clean up.", cluster, cl.Error, cluster)}
		}
		if cl.Status == api.ClusterUp && cl.Desired == api.DesiredUp {
			return nil
		}
		if _, err := c.Events(ctx, cluster, after, 5); err != nil {
			return err
		}
	}
}

// followJob streams a job's log until it ends and returns the job's exit
// code as an error (nil for SUCCEEDED).
func followJob(ctx context.Context, c *client.Client, cluster string, id int64) error {
	if err := streamLog(ctx, c, cluster, id, true, 0); err != nil {
		if ctx.Err() != nil {
			return detached(cluster, id)
		}
		return err
	}
	var j *api.Job
	var err error
	for i := 0; ; i++ {
		j, err = c.Job(ctx, cluster, id)
		if err != nil {
			return err
		}
		if j.Status.Terminal() || i > 200 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return jobResult(j)
}

// detached is what Ctrl-C during log streaming returns: the job goes on.
func detached(cluster string, id int64) error {
	return &exitError{code: 130, msg: fmt.Sprintf("\nStopped streaming; job %d keeps running. Resume with `sky-coord logs %s %d`, stop it with `sky-coord cancel %s %d`.",
		id, cluster, id, cluster, id)}
}

func jobResult(j *api.Job) error {
	code := jobExitCode(j.Status)
	mark := green("✓")
	if code != 0 {
		mark = red("✗")
	}
	fmt.Printf("%s Job %d %s.", mark, j.ID, colorStatus(j.Status))
	if j.Message != "" && !j.Dispatched {
		// A job that never reached the head has no log to explain it.
		fmt.Printf(" %s", j.Message)
	}
	fmt.Println()
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// streamLog copies a job's log to stdout, colouring the line prefixes on
// a terminal.
func streamLog(ctx context.Context, c *client.Client, cluster string, id int64, follow bool, tail int) error {
	body, err := c.Log(ctx, cluster, id, follow, tail)
	if err != nil {
		return err
	}
	defer body.Close()
	if !isTerminal(os.Stdout) {
		_, err := io.Copy(os.Stdout, body)
		return ignoreEOF(err)
	}
	r := bufio.NewReader(body)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			fmt.Print(colorPrefix(line))
		}
		if err != nil {
			return ignoreEOF(err)
		}
	}
}

func ignoreEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil
	}
	return err
}
