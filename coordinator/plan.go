package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/catalog"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
	"github.com/sky-coord/sky-coord/coordinator/state"
	"github.com/sky-coord/sky-coord/providers"
	"github.com/sky-coord/sky-coord/spec"
)

// checks says, for every cloud this coordinator knows of, whether it can
// launch there and why.
func (s *Server) checks() []api.CloudCheck {
	var out []api.CloudCheck
	for _, name := range s.providerNames() {
		reason := "provider " + name
		if ch, ok := s.cfg.Providers[name].(Checker); ok {
			enabled, why := ch.Check()
			out = append(out, api.CloudCheck{Cloud: name, Enabled: enabled, Reason: why})
			continue
		}
		if o, ok := s.cfg.Providers[name].(Offerer); ok {
			offers, err := o.Offers()
			switch {
			case err != nil:
				out = append(out, api.CloudCheck{Cloud: name, Reason: err.Error()})
				continue
			case len(offers) > 0:
				reason = describeOffers(offers)
			}
		}
		out = append(out, api.CloudCheck{Cloud: name, Enabled: true, Reason: reason})
	}
	for _, cloud := range catalog.Clouds {
		if _, ok := s.cfg.Providers[cloud]; ok {
			continue
		}
		found, detail := providers.FindCredentials(cloud)
		reason := detail + "; and this version of sky-coord has no " + cloud + " provider yet (plan with `launch --dryrun`)"
		if found {
			reason = "credentials found (" + detail + "), but this version of sky-coord has no " + cloud + " provider yet (plan with `launch --dryrun`)"
		}
		out = append(out, api.CloudCheck{Cloud: cloud, Reason: reason})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cloud < out[j].Cloud })
	return out
}

func describeOffers(offers []catalog.Offer) string {
	o := offers[0]
	var zones []string
	for _, x := range offers {
		z := x.Region
		if x.Zone != "" {
			z += "/" + x.Zone
		}
		zones = append(zones, z)
	}
	gpus := "no GPUs"
	if o.AccCount > 0 {
		gpus = fmt.Sprintf("%g× %s", o.AccCount, o.Accelerator)
	}
	return fmt.Sprintf("%g CPUs, %g GB, %s per node; %s", o.VCPUs, o.MemoryGiB, gpus, strings.Join(zones, ", "))
}

// plan runs the optimizer for a task. A dry run weighs every catalog
// cloud; a real one only the enabled ones.
func (s *Server) plan(res spec.Resources, numNodes int, blocked []catalog.Block, dryRun bool) ([]catalog.Choice, map[string]string, error) {
	enabled := map[string]bool{}
	disabled := map[string]string{}
	var extra []catalog.Offer
	for _, c := range s.checks() {
		if c.Enabled {
			enabled[c.Cloud] = true
		} else {
			disabled[c.Cloud] = c.Reason
		}
	}
	for name, p := range s.cfg.Providers {
		if o, ok := p.(Offerer); ok && enabled[name] {
			offers, err := o.Offers()
			if err != nil {
				return nil, nil, err
			}
			extra = append(extra, offers...)
		}
	}
	req := catalog.Request{Resources: res, NumNodes: numNodes, Enabled: enabled, Disabled: disabled, Extra: extra, Blocked: blocked}
	if dryRun {
		req.Enabled = nil
	}
	cat, err := s.catalog()
	if err != nil {
		return nil, nil, err
	}
	plan, err := cat.Optimize(req)
	if err != nil {
		return nil, nil, err
	}
	used := map[string]string{}
	for _, c := range plan {
		if w, ok := disabled[c.Cloud]; ok {
			used[c.Cloud] = w
		}
	}
	return plan, used, nil
}

func (s *Server) handlePlan(w http.ResponseWriter, r *http.Request) {
	var req api.PlanRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	if err := s.checkTask(req.Task, nil); err != nil {
		s.fail(w, err)
		return
	}
	plan, disabled, err := s.plan(req.Task.Resources, req.Task.NumNodes, nil, req.DryRun)
	if err != nil {
		s.fail(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	out := api.PlanResponse{Plan: []api.PlanEntry{}, Disabled: disabled}
	for _, c := range plan {
		out.Plan = append(out.Plan, planEntry(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.checks())
}

func planEntry(c catalog.Choice) api.PlanEntry {
	acc := map[string]float64{}
	if c.Accelerator != "" {
		acc[c.Accelerator] = c.AccCount
	}
	return api.PlanEntry{Cloud: c.Cloud, Region: c.Region, Zone: c.Zone, InstanceType: c.InstanceType,
		Accelerators: acc, NumNodes: c.NumNodes, HourlyCost: c.HourlyCost, UseSpot: c.UseSpot,
		VCPUs: c.VCPUs, MemoryGiB: c.MemoryGiB}
}

// blocks are what the failed attempts of the current round rule out.
func blocks(c *api.Cluster) []catalog.Block {
	var out []catalog.Block
	for _, a := range c.Attempts {
		if a.Round != c.Round || a.Outcome != api.AttemptFailed {
			continue
		}
		b := catalog.Block{Cloud: a.Cloud}
		switch a.Scope {
		case "zone":
			b.Region, b.Zone = a.Region, a.Zone
		case "region":
			b.Region = a.Region
		}
		out = append(out, b)
	}
	return out
}

// scopeOf is what a provisioning error blocks, as SkyPilot's failover
// does: no capacity → the zone (the region when zoneless), quota → the
// region, credentials → the whole cloud.
func scopeOf(err error, zone string) string {
	switch {
	case errors.Is(err, providers.ErrCredentials):
		return "cloud"
	case errors.Is(err, providers.ErrQuota):
		return "region"
	case zone == "":
		return "region"
	default:
		return "zone"
	}
}

// provision takes the next provisioning step of a cluster that has no
// nodes yet: pick the best offer not blocked by this round's failures,
// record the attempt, and launch it. A failed attempt is recorded with
// what it blocks, and the next reconcile tries the next offer.
func (s *Server) provision(ctx context.Context, c *api.Cluster) ([]providers.Instance, providers.Provider, bool) {
	var cur *api.Attempt
	if n := len(c.Attempts); n > 0 && c.Attempts[n-1].Outcome == api.AttemptRunning {
		cur = &c.Attempts[n-1]
	}
	if cur == nil {
		if !c.RetryAt.IsZero() && time.Now().Before(c.RetryAt) {
			return nil, nil, false // --retry-until-up: waiting for the next round
		}
		plan, _, err := s.plan(c.Requested, c.NumNodes, blocks(c), false)
		if err != nil {
			s.launchFailed(ctx, c.Name, err)
			return nil, nil, false
		}
		if len(plan) == 0 {
			s.exhausted(ctx, c)
			return nil, nil, false
		}
		ch := plan[0]
		a := api.Attempt{Cloud: ch.Cloud, Region: ch.Region, Zone: ch.Zone, InstanceType: ch.InstanceType,
			Resources: ch.Resources(), HourlyCost: ch.HourlyCost}
		if _, err := s.apply(fsm.AttemptStartedType, fsm.AttemptStarted{Cluster: c.Name, Attempt: a, At: time.Now().UTC()}); err != nil {
			s.log.Warn("record attempt", "cluster", c.Name, "err", err)
			return nil, nil, false
		}
		var fresh *api.Cluster
		s.read(func(st *state.Store) { fresh, _ = st.Cluster(c.Name) })
		if fresh == nil || len(fresh.Attempts) == 0 {
			return nil, nil, false
		}
		*c = *fresh
		cur = &c.Attempts[len(c.Attempts)-1]
		s.event(c.Name, fmt.Sprintf("Attempt %d: launching %s on %s ($%.2f/hr).", cur.N, cur.Resources, cur.Infra(), cur.HourlyCost))
	}
	p, err := s.provider(cur.Cloud)
	if err != nil {
		s.failAttempt(ctx, c, cur, err, "cloud")
		return nil, nil, false
	}
	s.pause(ctx, "provision")
	if ctx.Err() != nil {
		return nil, nil, false
	}
	insts, err := p.Launch(ctx, providers.LaunchRequest{
		Cluster: c.Name, NumNodes: c.NumNodes, Region: cur.Region, Zone: cur.Zone,
		CPUs: c.Requested.CPUs, Memory: c.Requested.Memory,
		// The idempotency key: a new leader retrying this attempt gets
		// the same instances back, never a second set.
		Token: fmt.Sprintf("%s-%d-%d", c.Name, c.Incarnation, cur.N),
	})
	if err == nil && len(insts) < c.NumNodes {
		err = fmt.Errorf("provider %s returned %d of %d nodes: %w", p.Name(), len(insts), c.NumNodes, providers.ErrNoCapacity)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, false
		}
		if errors.Is(err, providers.ErrInvalidRequest) {
			s.launchFailed(ctx, c.Name, fmt.Errorf("provision on %s: %w", cur.Infra(), err))
			return nil, nil, false
		}
		// Clean up whatever the failed attempt left before moving on.
		if terr := p.Terminate(ctx, c.Name); terr != nil {
			s.event(c.Name, fmt.Sprintf("Attempt %d: cleaning up on %s failed (down will retry): %v", cur.N, cur.Cloud, terr))
		}
		s.failAttempt(ctx, c, cur, err, scopeOf(err, cur.Zone))
		return nil, nil, false
	}
	return insts, p, true
}

func (s *Server) failAttempt(ctx context.Context, c *api.Cluster, a *api.Attempt, err error, scope string) {
	reason := strings.TrimSpace(err.Error())
	if _, aerr := s.apply(fsm.AttemptFailedType, fsm.AttemptFailed{Cluster: c.Name, N: a.N, Reason: reason, Scope: scope}); aerr != nil {
		s.log.Warn("record attempt failure", "cluster", c.Name, "err", aerr)
		return
	}
	where := a.Zone
	if scope != "zone" || where == "" {
		where = a.Region
	}
	if scope == "cloud" {
		where = a.Cloud
	}
	s.event(c.Name, fmt.Sprintf("Attempt %d failed on %s: %s. Blocking %s %s; trying the next offer.", a.N, a.Infra(), reason, scope, where))
	s.ctrl.poke()
}

// exhausted handles a round in which every offer failed: with
// --retry-until-up it schedules the next round, else the launch fails with
// every attempt in a table.
func (s *Server) exhausted(ctx context.Context, c *api.Cluster) {
	var round []api.Attempt
	for _, a := range c.Attempts {
		if a.Round == c.Round {
			round = append(round, a)
		}
	}
	table := attemptsTable(round)
	if c.RetryUntilUp {
		gap := s.cfg.RetryGap
		for i := 0; i < c.Round && gap < 5*time.Minute; i++ {
			gap = gap * 3 / 2
		}
		gap = min(gap, 5*time.Minute)
		at := time.Now().Add(gap).UTC()
		if _, err := s.apply(fsm.RetryRoundType, fsm.RetryRound{Cluster: c.Name, RetryAt: at}); err != nil {
			s.log.Warn("record retry round", "cluster", c.Name, "err", err)
			return
		}
		s.event(c.Name, fmt.Sprintf("Every offer failed (round %d); retrying in %s (--retry-until-up).\n%s", c.Round+1, roundGap(gap), table))
		return
	}
	s.launchFailed(ctx, c.Name, fmt.Errorf("every offer failed after %d attempt(s); retry with --retry-until-up, or change the task's resources:\n%s", len(round), table))
}

func roundGap(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

// attemptsTable renders attempts as SkyPilot's failover summary.
func attemptsTable(as []api.Attempt) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INFRA\tRESOURCES\tREASON")
	for _, a := range as {
		if a.Outcome != api.AttemptFailed {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Infra(), a.Resources, a.Reason)
	}
	tw.Flush()
	return strings.TrimRight(b.String(), "\n")
}

// catalogCache holds the loaded catalogs and the cache files' times.
type catalogCache struct {
	mu    sync.Mutex
	cat   *catalog.Catalog
	stamp string
}

// catalog returns the catalogs, read again when `catalog update` (or a
// user's edit) changed a cached file.
func (s *Server) catalog() (*catalog.Catalog, error) {
	if s.cfg.Catalog != nil {
		return s.cfg.Catalog, nil
	}
	cc := &s.catalogs
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var stamp strings.Builder
	if s.cfg.CatalogHome != "" {
		for _, f := range append([]string{"common/accelerators.csv"}, cloudFiles()...) {
			if fi, err := os.Stat(catalog.CachePath(s.cfg.CatalogHome, f)); err == nil {
				fmt.Fprintf(&stamp, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
			}
		}
	}
	if cc.cat != nil && cc.stamp == stamp.String() {
		return cc.cat, nil
	}
	cat, err := catalog.Load(s.cfg.CatalogHome)
	if err != nil {
		return nil, fmt.Errorf("load the catalogs: %w; fix the file or delete it to use the built-in snapshot", err)
	}
	cc.cat, cc.stamp = cat, stamp.String()
	return cat, nil
}

func cloudFiles() []string {
	var out []string
	for _, c := range catalog.Clouds {
		out = append(out, c+"/vms.csv")
	}
	return out
}
