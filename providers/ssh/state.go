package ssh

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/sky-coord/sky-coord/providers"
)

// allocation is one machine held by one node of a cluster. It keeps how
// to log in, so a cluster can be torn down after its pool changed.
type allocation struct {
	Cluster string                  `json:"cluster"`
	Index   int                     `json:"index"`
	Pool    string                  `json:"pool"`
	Host    Host                    `json:"host"`
	State   providers.InstanceState `json:"state"`
}

// id is the instance ID: pool and machine.
func (a *allocation) id() string { return a.Pool + "/" + a.Host.Addr() }

func (a *allocation) instance() providers.Instance {
	return providers.Instance{ID: a.id(), Index: a.Index, IP: a.Host.IP, Region: a.Pool, State: a.State}
}

// registry is every allocation of this SKY_COORD_HOME, by machine
// (host:port): a machine runs one cluster at a time.
type registry struct {
	Hosts map[string]*allocation `json:"hosts"`
}

func (r *registry) ofCluster(cluster string) []*allocation {
	var out []*allocation
	for _, a := range r.Hosts {
		if a.Cluster == cluster {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

func (p *Provider) stateDir() string { return filepath.Join(p.Home, "ssh") }

// update runs fn on the registry under this process's mutex and a file
// lock shared with other processes of the same home, and saves it when
// fn reports a change.
func (p *Provider) update(fn func(r *registry) (changed bool, err error)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir := p.stateDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ssh provider state: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "allocations.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("ssh provider state: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock ssh provider state: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing the file unlocks too
	r, err := p.load()
	if err != nil {
		return err
	}
	changed, err := fn(r)
	if err != nil || !changed {
		return err
	}
	return p.save(r)
}

// read returns a snapshot of the registry.
func (p *Provider) read() (*registry, error) {
	var out *registry
	err := p.update(func(r *registry) (bool, error) { out = r; return false, nil })
	return out, err
}

func (p *Provider) statePath() string { return filepath.Join(p.stateDir(), "allocations.json") }

func (p *Provider) load() (*registry, error) {
	r := &registry{Hosts: map[string]*allocation{}}
	data, err := os.ReadFile(p.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ssh provider state: %w", err)
	}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("read %s: %w (move it aside to start over, after checking which machines run clusters)", p.statePath(), err)
	}
	if r.Hosts == nil {
		r.Hosts = map[string]*allocation{}
	}
	return r, nil
}

func (p *Provider) save(r *registry) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := p.statePath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write ssh provider state: %w", err)
	}
	_, err = f.Write(data)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write ssh provider state: %w", err)
	}
	if err := os.Rename(tmp, p.statePath()); err != nil {
		return fmt.Errorf("write ssh provider state: %w", err)
	}
	return nil
}
