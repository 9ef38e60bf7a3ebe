package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
	"github.com/sky-coord/sky-coord/coordinator/state"
)

// HostKeys is the coordinator's store of pinned SSH host keys, in its
// replicated state: every replica refuses a changed key alike. It fits
// providers/ssh.HostKeyStore.
type HostKeys struct{ s *Server }

// HostKeys returns the server's host key store.
func (s *Server) HostKeys() HostKeys { return HostKeys{s} }

// HostKey returns the pinned key of host ("" when none).
func (h HostKeys) HostKey(_ context.Context, host string) (string, error) {
	var key string
	h.s.read(func(st *state.Store) { key = st.HostKeys[host] })
	return key, nil
}

// RememberHostKey pins a host's key on first use.
func (h HostKeys) RememberHostKey(_ context.Context, host, key string) error {
	if key == "" {
		return errors.New("empty host key")
	}
	_, err := h.s.apply(fsm.HostKeySetType, fsm.HostKeySet{Host: host, Key: key})
	return err
}

// AcceptHint is what a refused changed key tells the user to do.
const AcceptHint = "if the machine was reinstalled and the new key is expected, run `sky-coord ssh-keys forget {host}` and retry"

func (s *Server) handleHostKeys(w http.ResponseWriter, r *http.Request) {
	var out []api.HostKey
	s.read(func(st *state.Store) {
		for h, k := range st.HostKeys {
			out = append(out, api.HostKey{Host: h, Key: k})
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	if out == nil {
		out = []api.HostKey{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleForgetHostKey(w http.ResponseWriter, r *http.Request) {
	var req api.HostKey
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	var known bool
	s.read(func(st *state.Store) { _, known = st.HostKeys[req.Host] })
	if !known {
		s.fail(w, fmt.Errorf("no host key is pinned for %q (see `sky-coord ssh-keys`; hosts are host:port): %w", req.Host, state.ErrNotFound))
		return
	}
	if _, err := s.apply(fsm.HostKeySetType, fsm.HostKeySet{Host: req.Host}); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}
