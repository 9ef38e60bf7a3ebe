package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	var yes, detach, down, noSetup, dryRun, retryUntilUp bool
	var idleMinutes int
	var output string
	cmd := &cobra.Command{
		Use:   "launch [flags] TASK.yaml",
		Short: "Launch a cluster (or reuse one) and run a task on it",
		Long: `Launch a cluster (or reuse one) and run a task on it.

The optimizer picks the cheapest offer that fits the task's resources among
the enabled infrastructure (see ` + "`sky-coord check`" + `), and on a failure (no
capacity, quota, credentials) blocks that zone, region or cloud and tries
the next offer. --dryrun prints the plan and stops; it weighs every cloud in
the catalog, credentials or not.

The local provider can simulate regions and zones for rehearsing failover,
from $SKY_COORD_HOME/local.yaml:

  regions:
    local-a:
      price: 1.0                  # per node-hour
      zones:
        local-a-1: {capacity: 0}  # no capacity
        local-a-2: {fail: quota}  # fail: capacity | quota | credentials
    local-b:
      price: 2.0
      zones:
        local-b-1: {capacity: 8}`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if output != "" && output != "table" && output != "json" {
				return &exitError{code: 2, msg: fmt.Sprintf("--output %q: use table or json", output)}
			}
			t, err := loadTask(args[0], &tf)
			if err != nil {
				return err
			}
			if !dryRun {
				ensureWatcher() // for this sync, or the next exec's
			}
			c, err := connect(ctx)
			if err != nil {
				return err
			}
			if dryRun {
				plan, err := c.Plan(ctx, api.PlanRequest{Task: t, DryRun: true})
				if err != nil {
					return planError(err)
				}
				if output == "json" {
					return printJSON(map[string]any{"plan": plan.Plan})
				}
				printPlan(os.Stdout, plan.Plan, plan.Disabled)
				fmt.Println("Dry run: nothing was provisioned.")
				return nil
			}
			if cluster == "" {
				cluster = generatedName()
			}
			existing, _ := c.Cluster(ctx, cluster)
			if existing == nil || len(existing.Nodes) == 0 {
				plan, err := c.Plan(ctx, api.PlanRequest{Task: t})
				if err != nil {
					return planError(err)
				}
				printPlan(os.Stdout, plan.Plan, nil)
				if !yes && isTerminal(os.Stdin) && isTerminal(os.Stdout) {
					fmt.Printf("Launching a new cluster %q. Proceed? [Y/n] ", cluster)
					line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
					if a := strings.TrimSpace(strings.ToLower(line)); a != "" && a != "y" && a != "yes" {
						return &exitError{code: 1, msg: "Aborted."}
					}
				}
			} else {
				fmt.Printf("%s Reusing cluster %s (%s, %s).\n", dim("⚙︎"), bold(cluster), existing.Infra, existing.Status)
			}
			start := time.Now()
			blobs, err := uploadFiles(ctx, c, t, true)
			if err != nil {
				return err
			}
			storageSources, err := uploadStorageSources(ctx, c, t)
			if err != nil {
				return err
			}
			after := lastEventSeq(ctx, c, cluster)
			req := api.LaunchRequest{Cluster: cluster, Task: t, Blobs: blobs, User: currentUser(),
				Down: down, NoSetup: noSetup, RetryUntilUp: retryUntilUp, StorageSources: storageSources}
			if idleMinutes >= 0 {
				// -i N with --down: tear down after N idle minutes, not
				// right after the job (SkyPilot's autodown).
				req.Autostop = &api.AutostopRequest{IdleMinutes: idleMinutes, Down: down}
				req.Down = false
			}
			resp, err := c.Launch(ctx, req)
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
	f.BoolVar(&dryRun, "dryrun", false, "print the plan (chosen offer, cost, alternatives) and stop")
	f.StringVarP(&output, "output", "o", "", "with --dryrun: json prints {\"plan\": [...]}")
	f.IntVarP(&idleMinutes, "idle-minutes-to-autostop", "i", -1, "stop the cluster after this many idle minutes (no unfinished job); with --down, tear it down instead")
	f.BoolVarP(&retryUntilUp, "retry-until-up", "r", false, "when every offer fails, keep retrying with backoff until one launches")
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
			if t.Workdir != "" {
				ensureWatcher()
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
		evs, err := c.Events(ctx, cluster, after, 0)
		if err != nil {
			return err
		}
		// The cluster is read after its events, so a failure recorded
		// after the last event seen is never waited for.
		cl, err := c.Cluster(ctx, cluster)
		if err != nil {
			return err
		}
		for _, e := range evs {
			after = e.Seq
			if strings.HasPrefix(e.Message, "Launch failed: ") {
				continue // printed below, once, as the command's error
			}
			fmt.Printf("%s %s\n", dim("⚙︎"), e.Message)
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
	// The log ends when the job ends on the head; its state may reach the
	// coordinator a moment later (a replica may be down), which the
	// coordinator waits for. One that answers at once (an older build) is
	// asked again after a pause.
	deadline := time.Now().Add(30 * time.Second)
	for {
		asked := time.Now()
		j, err := c.WaitJob(ctx, cluster, id, 10)
		if err != nil {
			return err
		}
		if j.Status.Terminal() || time.Now().After(deadline) {
			return jobResult(j)
		}
		if time.Since(asked) < time.Second {
			time.Sleep(50 * time.Millisecond)
		}
	}
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

// planError turns a rejected plan (no offer fits) into exit code 2.
func planError(err error) error {
	var ae *client.Error
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
		return &exitError{code: 2, msg: "Error: " + ae.Message}
	}
	return err
}
