package testenv

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// Replicas runs the replicas of one replicated coordinator as
// `sky-coord server` processes on loopback, to be killed, frozen and
// started again from their disks. Replica i keeps its data in
// Home/replica-i and its output in Home/replica-i.log; the API token is
// Home/token.
type Replicas struct {
	Bin   string   // the sky-coord binary
	Home  string   // SKY_COORD_HOME of the replicas (and of clients)
	Addrs []string // API addresses; each one's Raft port is the next
	Env   []string // more environment for every replica
	Procs []*exec.Cmd
}

// NewReplicas picks n loopback addresses whose next port is free too, for
// replicas of the sky-coord binary bin in home. Nothing is started.
//
// The ports lie below Linux's ephemeral range (32768-60999): the other
// replicas keep dialing a killed one, and a dial from 127.0.0.1 to a port
// of 127.0.0.1 in that range that nothing listens on can be given that
// port as its source and connect to itself, so the replica could not
// listen there again when restarted.
func NewReplicas(bin, home string, n int, env ...string) (*Replicas, error) {
	r := &Replicas{Bin: bin, Home: home, Env: env, Procs: make([]*exec.Cmd, n)}
	for try := 0; len(r.Addrs) < n; try++ {
		if try == 1000 {
			return nil, fmt.Errorf("no %d free pairs of ports between 20000 and 32000 on 127.0.0.1", n)
		}
		p := 20000 + 2*rand.IntN(6000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // taken: try another
		}
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l.Close()
		if err != nil {
			continue // the Raft port is taken: try another
		}
		l2.Close()
		if addr := fmt.Sprintf("127.0.0.1:%d", p); !slices.Contains(r.Addrs, addr) {
			r.Addrs = append(r.Addrs, addr)
		}
	}
	return r, nil
}

// Start starts replica i, joining the others, expecting all of them.
func (r *Replicas) Start(i int) error {
	cmd := exec.Command(r.Bin, "server", "--data-dir", filepath.Join(r.Home, fmt.Sprintf("replica-%d", i)),
		"--bind", r.Addrs[i], "--join", strings.Join(r.Addrs, ","), "--bootstrap-expect", fmt.Sprint(len(r.Addrs)),
		"--token-file", filepath.Join(r.Home, "token"))
	cmd.Env = append(append(os.Environ(), "SKY_COORD_HOME="+r.Home), r.Env...)
	logf, err := os.OpenFile(filepath.Join(r.Home, fmt.Sprintf("replica-%d.log", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start replica %d: %w", i, err)
	}
	r.Procs[i] = cmd
	return nil
}

// Kill SIGKILLs replica i, if it runs, and reaps it.
func (r *Replicas) Kill(i int) {
	if p := r.Procs[i]; p != nil {
		_ = p.Process.Signal(syscall.SIGKILL)
		_ = p.Wait()
		r.Procs[i] = nil
	}
}

// Token reads the API token the replicas share ("" before the first
// replica made it).
func (r *Replicas) Token() string {
	tok, _ := os.ReadFile(filepath.Join(r.Home, "token"))
	return strings.TrimSpace(string(tok))
}

// MembersOf asks replica i for the Raft membership (nil when it does not
// answer within a second).
func (r *Replicas) MembersOf(i int) []api.Member {
	if r.Procs[i] == nil {
		return nil
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+r.Addrs[i]+"/v1/cluster/members", nil)
	if err != nil {
		return nil
	}
	api.SetToken(req, r.Token())
	resp, err := (&http.Client{Timeout: time.Second}).Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var ms []api.Member
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&ms) != nil {
		return nil
	}
	return ms
}

// Members is the membership as the first running replica that answers
// reports it.
func (r *Replicas) Members() []api.Member {
	for i := range r.Addrs {
		if ms := r.MembersOf(i); ms != nil {
			return ms
		}
	}
	return nil
}

// LeaderIn returns the index of the running replica that ms names as
// leader, or -1.
func (r *Replicas) LeaderIn(ms []api.Member) int {
	for _, m := range ms {
		if !m.Leader {
			continue
		}
		for i, a := range r.Addrs {
			if a == m.ID && r.Procs[i] != nil {
				return i
			}
		}
	}
	return -1
}
