package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/client"
)

func statusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status [CLUSTER...]",
		Short: "Show clusters",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			all, err := c.Clusters(cmd.Context())
			if err != nil {
				return err
			}
			clusters := all[:0]
			for _, cl := range all {
				if len(args) == 0 || contains(args, cl.Name) {
					clusters = append(clusters, cl)
				}
			}
			if output == "json" {
				return printJSON(clusters)
			}
			if len(clusters) == 0 {
				fmt.Println("No existing clusters.")
				return nil
			}
			renderClusters(os.Stdout, clusters, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func queueCmd() *cobra.Command {
	var output string
	var skipFinished bool
	cmd := &cobra.Command{
		Use:   "queue CLUSTER",
		Short: "Show a cluster's job queue",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			jobs, err := c.Jobs(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			shown := []*api.Job{}
			for i := len(jobs) - 1; i >= 0; i-- { // newest first, as SkyPilot
				if !skipFinished || !jobs[i].Status.Terminal() {
					shown = append(shown, jobs[i])
				}
			}
			if output == "json" {
				return printJSON(shown)
			}
			renderQueue(os.Stdout, args[0], shown, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().BoolVarP(&skipFinished, "skip-finished", "s", false, "show only unfinished jobs")
	return cmd
}

func logsCmd() *cobra.Command {
	var noFollow bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs CLUSTER [JOB_ID]",
		Short: "Stream a job's logs (the latest job by default)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := connect(ctx)
			if err != nil {
				return err
			}
			var id int64
			if len(args) == 2 {
				if id, err = strconv.ParseInt(args[1], 10, 64); err != nil {
					return &exitError{code: 2, msg: fmt.Sprintf("job ID %q is not a number", args[1])}
				}
			} else {
				jobs, err := c.Jobs(ctx, args[0])
				if err != nil {
					return err
				}
				if len(jobs) == 0 {
					return &exitError{code: 102, msg: fmt.Sprintf("cluster %s has no jobs", args[0])}
				}
				id = jobs[len(jobs)-1].ID
			}
			if noFollow {
				return streamLog(ctx, c, args[0], id, false, tail)
			}
			if err := streamLog(ctx, c, args[0], id, true, tail); err != nil {
				if ctx.Err() != nil {
					return detached(args[0], id)
				}
				return err
			}
			j, err := c.Job(ctx, args[0], id)
			if err != nil {
				return err
			}
			if code := jobExitCode(j.Status); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noFollow, "no-follow", false, "print what is there and return")
	cmd.Flags().IntVar(&tail, "tail", 0, "start from the last N lines")
	return cmd
}

func cancelCmd() *cobra.Command {
	var all, yes bool
	cmd := &cobra.Command{
		Use:   "cancel CLUSTER [JOB_ID...]",
		Short: "Cancel jobs",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.CancelRequest{All: all}
			for _, a := range args[1:] {
				id, err := strconv.ParseInt(a, 10, 64)
				if err != nil {
					return &exitError{code: 2, msg: fmt.Sprintf("job ID %q is not a number", a)}
				}
				req.JobIDs = append(req.JobIDs, id)
			}
			if !all && len(req.JobIDs) == 0 {
				return &exitError{code: 2, msg: "name the job IDs to cancel, or pass -a to cancel every unfinished job"}
			}
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			res, err := c.Cancel(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			if len(res.Cancelled) == 0 {
				fmt.Println("No unfinished job to cancel.")
				return nil
			}
			ids := make([]string, len(res.Cancelled))
			for i, id := range res.Cancelled {
				ids[i] = strconv.FormatInt(id, 10)
			}
			fmt.Printf("Cancelled job(s): %s\n", strings.Join(ids, ", "))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "cancel every unfinished job")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// lifecycleCmd builds stop, start and down: each asks for the change, then
// waits until the coordinator reports it done.
func lifecycleCmd(action, short string) *cobra.Command {
	var all, yes bool
	cmd := &cobra.Command{
		Use:   action + " [CLUSTER...]",
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if !all && len(args) == 0 {
				return &exitError{code: 2, msg: fmt.Sprintf("name the clusters to %s, or pass -a for all", action)}
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
				after := lastEventSeq(ctx, c, name)
				if err := c.SetDesired(ctx, name, action); err != nil {
					errs = append(errs, fmt.Errorf("%s %s: %w", action, name, err))
					continue
				}
				if err := waitLifecycle(ctx, c, name, action, after); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "every cluster")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// failingFor is how long stop or down may keep failing before the command
// stops waiting (the coordinator keeps retrying in the background).
const failingFor = 20 * time.Second

func waitLifecycle(ctx context.Context, c *client.Client, name, action string, after uint64) error {
	start := time.Now()
	var firstFailure time.Time
	var lastFailure string
	for {
		cl, err := c.Cluster(ctx, name)
		if action == "down" && client.IsNotFound(err) {
			fmt.Printf("%s Cluster %s terminated.\n", green("✓"), name)
			return nil
		}
		if err != nil {
			return err
		}
		evs, _ := c.Events(ctx, name, after, 0)
		for _, e := range evs {
			after = e.Seq
			if strings.Contains(e.Message, "failed") || strings.Contains(e.Message, "retry") {
				fmt.Printf("%s %s\n", dim("⚙︎"), e.Message)
				if firstFailure.IsZero() {
					firstFailure = time.Now()
				}
				lastFailure = e.Message
			}
		}
		if !firstFailure.IsZero() && time.Since(firstFailure) > failingFor && (action == "down" || action == "stop") {
			return fmt.Errorf("%s %s: still failing after %s (%s); the coordinator keeps retrying in the background: fix the cause, then check `sky-coord status %s`",
				action, name, failingFor, lastFailure, name)
		}
		switch {
		case action == "stop" && cl.Status == api.ClusterStopped:
			fmt.Printf("%s Cluster %s stopped.\n", green("✓"), name)
			return nil
		case action == "start" && cl.Status == api.ClusterUp:
			fmt.Printf("%s Cluster %s is UP.\n", green("✓"), name)
			return nil
		case action == "start" && cl.Error != "":
			return fmt.Errorf("start %s: %s", name, cl.Error)
		}
		if time.Since(start) > 10*time.Minute {
			return fmt.Errorf("%s %s: still not done after 10 minutes; see `sky-coord status %s`", action, name, name)
		}
		_, _ = c.Events(ctx, name, after, 2)
	}
}

// renderClusters writes the `status` table.
func renderClusters(w io.Writer, clusters []*api.Cluster, now time.Time) {
	var rows [][]string
	for _, cl := range clusters {
		status := string(cl.Status)
		if cl.Error != "" {
			status += " (launch failed)"
		}
		var lost []string
		for _, n := range cl.Nodes {
			if n.Lost != "" {
				lost = append(lost, strconv.Itoa(n.Rank))
			}
		}
		if len(lost) > 0 {
			status += " (node " + strings.Join(lost, ", ") + " lost)"
		}
		auto := "-"
		if a := cl.Autostop; a != nil {
			auto = fmt.Sprintf("%dm", a.IdleMinutes)
			if a.Down {
				auto += " (down)"
			}
		}
		rows = append(rows, []string{cl.Name, cl.Infra, cl.Resources, status, auto, ago(cl.LaunchedAt, now)})
	}
	table(w, []string{"NAME", "INFRA", "RESOURCES", "STATUS", "AUTOSTOP", "LAUNCHED"}, rows)
}

// renderQueue writes the `queue` table, jobs in the order given.
func renderQueue(w io.Writer, cluster string, jobs []*api.Job, now time.Time) {
	fmt.Fprintf(w, "Job queue of cluster %s\n", cluster)
	var rows [][]string
	for _, j := range jobs {
		started, dur := "-", "-"
		if j.StartedAt != nil {
			started = ago(*j.StartedAt, now)
			end := now
			if j.EndedAt != nil {
				end = *j.EndedAt
			}
			dur = duration(end.Sub(*j.StartedAt))
		}
		name := j.Name
		if name == "" {
			name = "-"
		}
		rows = append(rows, []string{strconv.FormatInt(j.ID, 10), name, j.User, ago(j.SubmittedAt, now), started, dur,
			j.Resources, colorStatus(j.Status), "~/sky_logs/" + j.LogDir})
	}
	table(w, []string{"ID", "NAME", "USER", "SUBMITTED", "STARTED", "DURATION", "RESOURCES", "STATUS", "LOG"}, rows)
}

// clusterNames is args, or with all every cluster the coordinator knows.
func clusterNames(ctx context.Context, c *client.Client, args []string, all bool) ([]string, error) {
	if !all {
		return args, nil
	}
	cls, err := c.Clusters(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, cl := range cls {
		names = append(names, cl.Name)
	}
	return names, nil
}
