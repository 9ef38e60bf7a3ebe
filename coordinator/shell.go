package coordinator

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/coordinator/state"
	"github.com/sky-coord/sky-coord/ptystream"
)

// handleShell joins a client's `sky-coord ssh` session to the agent of
// the node it names (?node=RANK), byte for byte, both ways.
func (s *Server) handleShell(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	rank := 0
	if v := q.Get("node"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(w, fmt.Errorf("node %q is not a rank (0 is the head): %w", v, errBadRequest))
			return
		}
		rank = n
	}
	var c *api.Cluster
	var err error
	s.read(func(st *state.Store) { c, err = st.Cluster(name) })
	if err != nil {
		s.fail(w, fmt.Errorf("cluster %q does not exist (see `sky-coord status`): %w", name, state.ErrNotFound))
		return
	}
	if c.Status != api.ClusterUp || len(c.Nodes) == 0 {
		s.fail(w, fmt.Errorf("cluster %q is %s, not UP; start it with `sky-coord start %s`: %w", name, c.Status, name, state.ErrConflict))
		return
	}
	if rank >= len(c.Nodes) {
		s.fail(w, fmt.Errorf("cluster %q has nodes 0 to %d; there is no node %d: %w", name, len(c.Nodes)-1, rank, errBadRequest))
		return
	}
	addr := c.Nodes[rank].AgentAddr
	conn, err := s.agents.dial(r.Context(), addr)
	if err != nil {
		writeError(w, http.StatusBadGateway, fmt.Errorf("reach node %d of %s (%s): %w", rank, name, addr, err))
		return
	}
	fwd := url.Values{}
	for _, k := range []string{"rows", "cols", "term", "cmd"} {
		if v := q.Get(k); v != "" {
			fwd.Set(k, v)
		}
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/shell?"+fwd.Encode(), nil)
	if err != nil {
		conn.Close()
		s.fail(w, err)
		return
	}
	api.SetToken(req, s.agentToken(c.Name, c.Incarnation))
	up, err := ptystream.Dial(conn, req)
	if err != nil {
		conn.Close()
		writeError(w, http.StatusBadGateway, fmt.Errorf("open a shell on node %d of %s: %w", rank, name, err))
		return
	}
	defer up.Close()
	down, err := ptystream.Accept(w, r)
	if err != nil {
		return
	}
	defer down.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(up, down)
		up.Close()
	}()
	_, _ = io.Copy(down, up)
	down.Close()
	wg.Wait()
}
