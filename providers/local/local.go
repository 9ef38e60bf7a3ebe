// Package local is the default provider: each node is a directory under
// the coordinator's home and one sky-agent process on this machine, with
// its own loopback address (127.0.x.y) on Linux.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sky-coord/sky-coord/bootstrap"
	"github.com/sky-coord/sky-coord/providers"
)

// Name is the provider's name, used in `infra: local`.
const Name = "local"

// Provider keeps its nodes under Root/clusters/<cluster>/node-<i>.
type Provider struct {
	Root string
	// ConfigPath is local.yaml, the simulated regions and zones (see Sim);
	// empty or missing means one region, "local", without limits.
	ConfigPath string
	// mu serializes changes within this process; the address lock file
	// serializes them across processes.
	mu sync.Mutex
}

var _ providers.Provider = (*Provider)(nil)

// New returns a provider rooted at dir.
// Its simulated regions are read from local.yaml beside dir.
func New(dir string) *Provider {
	return &Provider{Root: dir, ConfigPath: filepath.Join(filepath.Dir(dir), "local.yaml")}
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

// record is what the provider keeps per node, in node.json beside the home.
type record struct {
	ID     string                  `json:"id"`
	Index  int                     `json:"index"`
	IP     string                  `json:"ip"`
	Region string                  `json:"region,omitempty"`
	Zone   string                  `json:"zone,omitempty"`
	State  providers.InstanceState `json:"state"`
}

func (p *Provider) clusterDir(cluster string) string {
	return filepath.Join(p.Root, "clusters", cluster)
}

// NodeHome is the home directory ("~") of a node.
func (p *Provider) NodeHome(cluster string, index int) string {
	return filepath.Join(p.clusterDir(cluster), fmt.Sprintf("node-%d", index), "home")
}

func (p *Provider) recordPath(cluster string, index int) string {
	return filepath.Join(p.clusterDir(cluster), fmt.Sprintf("node-%d", index), "node.json")
}

// Marker is the value of SKY_COORD_NODE in every process of a node.
func (p *Provider) Marker(cluster string, index int) string {
	return p.NodeHome(cluster, index)
}

// OnCoordinatorMachine reports that local nodes run on the coordinator's
// machine: they share its chunk store, so synced code is stored here
// once, however many nodes there are.
func (p *Provider) OnCoordinatorMachine() bool { return true }

// SharedTreeDir is where the cluster's nodes keep one copy of each synced
// tree, mounted copy-on-write under each node's own (as root). It goes
// with the cluster at Terminate, after its mounts.
func (p *Provider) SharedTreeDir(cluster string) string {
	return filepath.Join(p.clusterDir(cluster), "trees")
}

// PrivateFileMounts reports whether local nodes get a private view of
// file_mounts destinations outside their home: each job process runs in a
// mount namespace of its own, which takes root, or, without root, a kernel
// that allows unprivileged user namespaces.
func (p *Provider) PrivateFileMounts() bool { return privateMountsSupported() }

// ValidateTask rejects what local nodes cannot honour (the coordinator
// finds it by type assertion): local nodes share this machine's
// filesystem, so without private views a file_mounts destination outside
// the node's home would be one path for every node.
func (p *Provider) ValidateTask(req providers.LaunchRequest) error {
	for _, dst := range req.FileMountDsts {
		if !strings.HasPrefix(dst, "/") {
			continue
		}
		if path.Clean(dst) == "/" {
			return fmt.Errorf("file_mounts destination %q would replace the root directory: %w", dst, providers.ErrInvalidRequest)
		}
		if !p.PrivateFileMounts() {
			return fmt.Errorf("file_mounts destination %q: local nodes share this machine's filesystem, and giving each node its own view of an absolute path takes a mount namespace, which needs root or unprivileged user namespaces (off on this machine); use a path under the node's home (\"~/%s\") or a relative one (under ~/sky_workdir), run sky-coord as root, or use the ssh or a cloud provider: %w",
				dst, strings.TrimPrefix(dst, "/"), providers.ErrInvalidRequest)
		}
		if err := mountpointCreatable(path.Clean(dst)); err != nil {
			return fmt.Errorf("file_mounts destination %q: %v; without root a destination must exist already or sit in a directory you can write (under /tmp, say), or use \"~/%s\": %w",
				dst, err, strings.TrimPrefix(dst, "/"), providers.ErrInvalidRequest)
		}
	}
	return nil
}

// Launch implements providers.Provider. Existing nodes are returned as they
// are; missing ones get a directory and a free loopback address.
func (p *Provider) Launch(ctx context.Context, req providers.LaunchRequest) ([]providers.Instance, error) {
	if err := p.ValidateTask(req); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	unlock, err := p.lockAddrs()
	if err != nil {
		return nil, err
	}
	defer unlock()
	used, err := p.usedIPs()
	if err != nil {
		return nil, err
	}
	have, err := p.records(req.Cluster)
	if err != nil {
		return nil, err
	}
	pl, err := p.placeFor(req, len(have))
	if err != nil {
		return nil, err
	}
	var out []providers.Instance
	for i := 0; i < req.NumNodes; i++ {
		rec, err := p.readRecord(req.Cluster, i)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if rec == nil {
			ip, err := allocIP(used, p.NodeHome(req.Cluster, i))
			if err != nil {
				return nil, fmt.Errorf("launch node %d of cluster %q: %w", i, req.Cluster, err)
			}
			used[ip] = true
			rec = &record{ID: fmt.Sprintf("local-%s-%d", req.Cluster, i), Index: i, IP: ip, Region: pl.region, Zone: pl.zone}
			if err := os.MkdirAll(p.NodeHome(req.Cluster, i), 0o755); err != nil {
				return nil, fmt.Errorf("launch node %d of cluster %q: %w", i, req.Cluster, err)
			}
		}
		rec.State = providers.StateRunning
		if err := p.writeRecord(req.Cluster, rec); err != nil {
			return nil, err
		}
		out = append(out, p.instance(rec))
	}
	return out, nil
}

func (p *Provider) instance(r *record) providers.Instance {
	region := r.Region
	if region == "" {
		region = DefaultRegion
	}
	m := machine()
	return providers.Instance{ID: r.ID, Index: r.Index, IP: r.IP, Region: region, Zone: r.Zone,
		State: r.State, CPUs: m.cpus, GPUs: m.gpus}
}

// Describe implements providers.Provider.
func (p *Provider) Describe(_ context.Context, cluster string) ([]providers.Instance, error) {
	recs, err := p.records(cluster)
	if err != nil {
		return nil, err
	}
	out := make([]providers.Instance, 0, len(recs))
	for _, r := range recs {
		out = append(out, p.instance(r))
	}
	return out, nil
}

// Stop implements providers.Provider: every process of the cluster's
// nodes is killed; directories and addresses are kept.
func (p *Provider) Stop(ctx context.Context, cluster string) error {
	recs, err := p.records(cluster)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := killMarked(ctx, p.Marker(cluster, r.Index)); err != nil {
			return fmt.Errorf("stop node %d of cluster %q: %w", r.Index, cluster, err)
		}
		r.State = providers.StateStopped
		if err := p.writeRecord(cluster, r); err != nil {
			return err
		}
	}
	return nil
}

// Start implements providers.Provider.
func (p *Provider) Start(_ context.Context, cluster string) ([]providers.Instance, error) {
	recs, err := p.records(cluster)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("cluster %q has no local nodes to start: %w", cluster, providers.ErrInvalidRequest)
	}
	out := make([]providers.Instance, 0, len(recs))
	for _, r := range recs {
		r.State = providers.StateRunning
		if err := p.writeRecord(cluster, r); err != nil {
			return nil, err
		}
		out = append(out, p.instance(r))
	}
	return out, nil
}

// Terminate implements providers.Provider: every process of every node is
// killed (found by its marker, so none escapes by leaving its process
// group), then the directories are removed.
func (p *Provider) Terminate(ctx context.Context, cluster string) error {
	recs, err := p.records(cluster)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := killMarked(ctx, p.Marker(cluster, r.Index)); err != nil {
			return fmt.Errorf("terminate node %d of cluster %q: %w", r.Index, cluster, err)
		}
		release(r.IP, p.NodeHome(cluster, r.Index))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := unmountUnder(p.clusterDir(cluster)); err != nil {
		return fmt.Errorf("terminate cluster %q: %w", cluster, err)
	}
	if err := os.RemoveAll(p.clusterDir(cluster)); err != nil {
		return fmt.Errorf("terminate cluster %q: remove its directories: %w", cluster, err)
	}
	return nil
}

// OpenPorts implements providers.Provider: loopback needs no firewall.
func (p *Provider) OpenPorts(context.Context, string, []providers.PortRange) error { return nil }

// Transport hands out a bootstrap transport to a node.
func (p *Provider) Transport(_ context.Context, inst providers.Instance) (bootstrap.Transport, error) {
	cluster := strings.TrimSuffix(strings.TrimPrefix(inst.ID, "local-"), "-"+strconv.Itoa(inst.Index))
	return bootstrap.NewLocal(p.NodeHome(cluster, inst.Index)), nil
}

func (p *Provider) records(cluster string) ([]*record, error) {
	entries, err := os.ReadDir(p.clusterDir(cluster))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*record
	for _, e := range entries {
		idx, ok := strings.CutPrefix(e.Name(), "node-")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(idx)
		if err != nil {
			continue
		}
		r, err := p.readRecord(cluster, i)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

func (p *Provider) readRecord(cluster string, i int) (*record, error) {
	data, err := os.ReadFile(p.recordPath(cluster, i))
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", p.recordPath(cluster, i), err)
	}
	return &r, nil
}

func (p *Provider) writeRecord(cluster string, r *record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := p.recordPath(cluster, r.Index)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// usedIPs collects the addresses of every local node under Root.
func (p *Provider) usedIPs() (map[string]bool, error) {
	used := map[string]bool{}
	matches, err := filepath.Glob(filepath.Join(p.Root, "clusters", "*", "node-*", "node.json"))
	if err != nil {
		return nil, err
	}
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		var r record
		if json.Unmarshal(data, &r) == nil {
			used[r.IP] = true
		}
	}
	return used, nil
}

// lockAddrs takes an exclusive lock on the address registry.
func (p *Provider) lockAddrs() (func(), error) {
	if err := os.MkdirAll(p.Root, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(p.Root, "addrs.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock local address registry: %w", err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// killWait is how long killMarked waits after SIGTERM before SIGKILL.
const killWait = 2 * time.Second

func errStuck(pids []int) error {
	return fmt.Errorf("processes %v did not exit after SIGKILL", pids)
}

// Kill takes a node away as a preemption would: every process of the node
// (its agent and job processes) is killed and the instance is recorded as
// terminated. Its directory stays, so `start` brings it back.
func (p *Provider) Kill(ctx context.Context, cluster string, index int) error {
	rec, err := p.readRecord(cluster, index)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cluster %q has no local node %d: %w", cluster, index, providers.ErrInvalidRequest)
		}
		return err
	}
	// Recorded first: whoever asks once the node falls silent hears
	// that its instance is gone.
	p.mu.Lock()
	rec.State = providers.StateTerminated
	err = p.writeRecord(cluster, rec)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if err := killMarkedNow(ctx, p.Marker(cluster, index)); err != nil {
		return fmt.Errorf("kill node %d of cluster %q: %w", index, cluster, err)
	}
	return nil
}
