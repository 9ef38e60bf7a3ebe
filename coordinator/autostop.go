package coordinator

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
	"github.com/sky-coord/sky-coord/coordinator/state"
	"github.com/sky-coord/sky-coord/spec"
)

// autostop is the autostop step of an UP cluster (leader only): once the
// cluster has had no unfinished job for its idle minutes it is stopped,
// or torn down with Down, as SkyPilot's autostop does.
func (s *Server) autostop(ctx context.Context, c *api.Cluster) {
	a := c.Autostop
	if a == nil || c.Desired != api.DesiredUp {
		return
	}
	var since time.Time
	var idle bool
	s.read(func(st *state.Store) { since, idle = st.IdleSince(c.Name) })
	limit := time.Duration(a.IdleMinutes) * time.Minute
	if !idle || time.Since(since) < limit {
		if idle {
			s.ctrl.after(limit - time.Since(since))
		}
		return
	}
	to, verb := api.DesiredStopped, "stopping"
	if a.Down {
		to, verb = api.DesiredDown, "tearing it down"
	}
	s.event(c.Name, fmt.Sprintf("Autostop: idle for %s (limit %d min); %s.", time.Since(since).Round(time.Second), a.IdleMinutes, verb))
	if _, err := s.apply(fsm.ClusterDesiredType, fsm.ClusterDesired{Cluster: c.Name, Desired: to, At: time.Now().UTC()}); err != nil {
		s.log.Warn("autostop", "cluster", c.Name, "err", err)
	}
}

// autostopFrom turns a request, or the task's resources.autostop, into a
// policy; nil when neither sets one.
func autostopFrom(req *api.AutostopRequest, r spec.Resources, now time.Time) *api.Autostop {
	switch {
	case req != nil && !req.Cancel:
		return &api.Autostop{IdleMinutes: req.IdleMinutes, Down: req.Down, SetAt: now}
	case r.Autostop != nil && r.Autostop.Enabled:
		return &api.Autostop{IdleMinutes: r.Autostop.IdleMinutes, Down: r.Autostop.Down, SetAt: now}
	}
	return nil
}

func (s *Server) handleAutostop(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.AutostopRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	if req.IdleMinutes < 0 && !req.Cancel {
		s.fail(w, fmt.Errorf("idle minutes must be 0 or more, got %d: %w", req.IdleMinutes, errBadRequest))
		return
	}
	var a *api.Autostop
	if !req.Cancel {
		a = &api.Autostop{IdleMinutes: req.IdleMinutes, Down: req.Down, SetAt: time.Now().UTC()}
	}
	if _, err := s.apply(fsm.AutostopSetType, fsm.AutostopSet{Cluster: name, Autostop: a}); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}
