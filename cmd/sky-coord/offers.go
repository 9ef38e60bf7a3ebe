package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/catalog"
	"github.com/sky-coord/sky-coord/providers/local"
)

// printPlan shows the chosen offer and the next alternatives, as
// SkyPilot's "Considered resources" table.
func printPlan(w io.Writer, plan []api.PlanEntry, disabled map[string]string) {
	if len(plan) == 0 {
		return
	}
	nodes := plan[0].NumNodes
	fmt.Fprintf(w, "Considered resources (%d node%s):\n", nodes, pluralS(nodes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, " INFRA\tINSTANCE\tvCPUs\tMem(GB)\tGPUS\tCOST ($/hr)\tCHOSEN")
	seen := map[string]bool{}
	shown := 0
	for i, p := range plan {
		// One row per cloud, region and instance type: other zones of
		// the same region are the failover behind the row.
		key := p.Cloud + "/" + p.Region + "/" + p.InstanceType
		if seen[key] {
			continue
		}
		seen[key] = true
		if shown == 5 {
			break
		}
		shown++
		chosen := ""
		if i == 0 {
			chosen = "✔"
		}
		fmt.Fprintf(tw, " %s\t%s\t%s\t%s\t%s\t%.2f\t%s\n", planInfra(p), p.InstanceType, num(p.VCPUs), num(p.MemoryGiB),
			accelerators(p.Accelerators), p.HourlyCost, chosen)
	}
	tw.Flush()
	if len(plan) > 1 {
		fmt.Fprintf(w, "%d offer(s) in all; on failure the next is tried (zone, then region, then cloud).\n", len(plan))
	}
	if len(disabled) > 0 {
		var clouds []string
		for c := range disabled {
			clouds = append(clouds, c)
		}
		sort.Strings(clouds)
		for _, c := range clouds {
			fmt.Fprintf(w, "Note: launching on %s would fail here: %s\n", c, disabled[c])
		}
	}
}

func planInfra(p api.PlanEntry) string {
	s := p.Cloud
	if p.Region != "" && p.Region != p.Cloud {
		s += "/" + p.Region
	}
	if p.Zone != "" {
		s += "/" + p.Zone
	}
	return s
}

func accelerators(m map[string]float64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, k+":"+num(v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func pluralS(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// localOffers is what this machine offers as local nodes, for show-gpus.
func localOffers() []catalog.Offer {
	offers, err := local.New(filepath.Join(skyHome(), "local")).Offers()
	if err != nil {
		return nil
	}
	return offers
}

func showGPUsCmd() *cobra.Command {
	var infra, output string
	var allRegions bool
	cmd := &cobra.Command{
		Use:     "show-gpus [NAME[:COUNT]]",
		Aliases: []string{"show-accelerators"},
		Short:   "List the GPUs and other accelerators the catalogs offer, with prices",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return showGPUs(os.Stdout, args, infra, output, allRegions)
		},
	}
	f := cmd.Flags()
	f.StringVar(&infra, "infra", "", "only this cloud (aws, gcp, local)")
	f.BoolVar(&allRegions, "all-regions", false, "list every region, not only each instance type's cheapest")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func gpusCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "gpus", Short: "Accelerators: `gpus list` is `show-gpus`"}
	list := showGPUsCmd()
	list.Use = "list [NAME[:COUNT]]"
	list.Aliases = nil
	cmd.AddCommand(list)
	return cmd
}

func showGPUs(w io.Writer, args []string, infra, output string, allRegions bool) error {
	cat, err := catalog.Load(skyHome())
	if err != nil {
		return err
	}
	q := catalog.GPUQuery{AllRegions: allRegions, Extra: localOffers()}
	if infra != "" {
		cloud := strings.ToLower(strings.SplitN(infra, "/", 2)[0])
		if cloud != "local" && !contains(catalog.Clouds, cloud) {
			return &exitError{code: 2, msg: fmt.Sprintf("--infra %q: show-gpus knows %s and local", infra, strings.Join(catalog.Clouds, ", "))}
		}
		q.Clouds = []string{cloud}
	}
	var count float64
	if len(args) == 1 {
		name, c, hasCount := strings.Cut(args[0], ":")
		q.Name = name
		if hasCount {
			if count, err = strconv.ParseFloat(c, 64); err != nil || count <= 0 {
				return &exitError{code: 2, msg: fmt.Sprintf("%q: the count after ':' must be a positive number", args[0])}
			}
		}
	}
	byName := cat.GPUs(q)
	if count > 0 {
		for k, list := range byName {
			var keep []catalog.GPUOffer
			for _, g := range list {
				if g.Count == count {
					keep = append(keep, g)
				}
			}
			byName[k] = keep
			if len(keep) == 0 {
				delete(byName, k)
			}
		}
	}
	if output == "json" {
		if byName == nil {
			byName = map[string][]catalog.GPUOffer{}
		}
		return printJSON(byName)
	}
	if len(byName) == 0 {
		msg := "no accelerator in the catalogs matches"
		if len(args) == 1 {
			msg = fmt.Sprintf("no accelerator in the catalogs matches %q", args[0])
			if names := cat.AcceleratorNames(); len(names) > 0 {
				msg += "; known names include " + strings.Join(firstN(names, 12), ", ")
			}
		}
		return &exitError{code: 1, msg: msg}
	}
	var names []string
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(args) == 0 {
		for _, section := range []struct {
			title  string
			common bool
		}{{"COMMON_GPU", true}, {"OTHER_GPU", false}} {
			rows := 0
			for _, n := range names {
				if contains(catalog.CommonGPUs, n) != section.common {
					continue
				}
				if rows == 0 {
					fmt.Fprintf(tw, "%s\tAVAILABLE_QUANTITIES\n", section.title)
				}
				rows++
				fmt.Fprintf(tw, "%s\t%s\n", n, quantities(byName[n]))
			}
			if rows > 0 {
				tw.Flush()
				fmt.Fprintln(w)
			}
		}
		fmt.Fprintln(w, "Hint: `sky-coord show-gpus NAME` lists instance types and prices; --all-regions lists every region.")
		return nil
	}
	fmt.Fprintln(tw, "GPU\tQTY\tCLOUD\tINSTANCE_TYPE\tDEVICE_MEM\tvCPUs\tHOST_MEM\tHOURLY_PRICE\tHOURLY_SPOT_PRICE\tREGION")
	for _, n := range names {
		for _, g := range byName[n] {
			mem := "-"
			if g.DeviceMemGiB > 0 {
				mem = num(g.DeviceMemGiB) + "GB"
			}
			spot := "-"
			if g.SpotPrice > 0 {
				spot = fmt.Sprintf("$ %.3f", g.SpotPrice)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%sGB\t$ %.3f\t%s\t%s\n", g.Accelerator, num(g.Count), strings.ToUpper(g.Cloud),
				g.InstanceType, mem, num(g.VCPUs), num(g.MemoryGiB), g.Price, spot, g.Region)
		}
	}
	return tw.Flush()
}

func quantities(list []catalog.GPUOffer) string {
	seen := map[float64]bool{}
	var qs []float64
	for _, g := range list {
		if !seen[g.Count] {
			seen[g.Count] = true
			qs = append(qs, g.Count)
		}
	}
	sort.Float64s(qs)
	var ss []string
	for _, q := range qs {
		ss = append(ss, num(q))
	}
	return strings.Join(ss, ", ")
}

func firstN(ss []string, n int) []string {
	if len(ss) > n {
		return ss[:n]
	}
	return ss
}

func checkCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Show which clouds and pools can be launched on, and why the others cannot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			checks, err := c.Check(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(checks)
			}
			fmt.Println("Checking enabled infra...")
			for _, ch := range checks {
				mark, state := red("✘"), "disabled"
				if ch.Enabled {
					mark, state = green("✔"), "enabled"
				}
				fmt.Printf("  %s %s: %s — %s\n", mark, bold(ch.Cloud), state, ch.Reason)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func catalogCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "catalog", Short: "Instance catalogs (prices, accelerators)"}
	var clouds []string
	var baseURL string
	var timeout time.Duration
	update := &cobra.Command{
		Use:   "update",
		Short: "Download the public catalogs into $SKY_COORD_HOME/catalogs (the old copy is kept if a download fails)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(clouds) == 0 {
				clouds = catalog.Clouds
			}
			for _, c := range clouds {
				if !contains(catalog.Clouds, c) {
					return &exitError{code: 2, msg: fmt.Sprintf("--cloud %q: catalogs exist for %s", c, strings.Join(catalog.Clouds, ", "))}
				}
			}
			if baseURL == "" {
				baseURL = os.Getenv("SKY_COORD_CATALOG_URL")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			failed := 0
			for _, r := range catalog.Update(ctx, &http.Client{}, baseURL, skyHome(), clouds) {
				if r.Err != nil {
					failed++
					fmt.Printf("%s %s: %v (kept the previous copy)\n", red("✘"), r.File, r.Err)
					continue
				}
				fmt.Printf("%s %s: %d bytes → %s\n", green("✔"), r.File, r.Bytes, r.Path)
			}
			if failed > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("%d download(s) failed; sky-coord keeps using the previous copy (or the built-in snapshot). Check the network or pass --base-url.", failed)}
			}
			return nil
		},
	}
	f := update.Flags()
	f.StringSliceVar(&clouds, "cloud", nil, "clouds to update (default: all)")
	f.StringVar(&baseURL, "base-url", "", "where catalogs/<version>/<cloud>/vms.csv live (default: $SKY_COORD_CATALOG_URL, else SkyPilot's public catalog)")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	cmd.AddCommand(update)
	return cmd
}
