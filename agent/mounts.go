package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/mounts"
)

// bucketMounts are the buckets this node has put in place. MOUNT and
// MOUNT_CACHED live as long as the agent (and come back when it
// restarts); COPY is done once per destination and URL.
type bucketMounts struct {
	mu      sync.Mutex
	mounted map[string]*mounts.Mounted // by key
	copied  map[string]bool
}

// mountsFile keeps what this node mounts, and the credentials for it
// (mode 0600), so a restarted agent mounts again and resumes the uploads
// its predecessor left.
func (a *Agent) mountsFile() string { return filepath.Join(a.cfg.Home, ".sky", "mounts.json") }

type savedMounts struct {
	Mounts []api.MountRef    `json:"mounts"`
	Env    map[string]string `json:"env,omitempty"`
}

func mountKey(r api.MountRef) string {
	return r.Dst + "\x00" + r.URL + "\x00" + strings.ToUpper(r.Mode)
}

// putMounts puts a job's buckets in place on this node.
func (a *Agent) putMounts(ctx context.Context, refs []api.MountRef, env map[string]string) error {
	if len(refs) == 0 {
		return nil
	}
	for k, v := range env {
		_ = os.Setenv(k, v) // the store clients read their standard environment
	}
	if err := a.saveMounts(refs, env); err != nil {
		return fmt.Errorf("remember mounts: %w", err)
	}
	for _, r := range refs {
		if err := a.putMount(ctx, r); err != nil {
			return fmt.Errorf("file_mounts %s (%s, %s): %w", r.Dst, r.URL, r.Mode, err)
		}
	}
	return nil
}

func (a *Agent) putMount(ctx context.Context, r api.MountRef) error {
	mode, err := mounts.ParseMode(r.Mode)
	if err != nil {
		return err
	}
	dest, err := resolveDest(a.cfg.Home, r.Dst, false)
	if err != nil {
		return err
	}
	private := ""
	if a.cfg.PrivateMounts && filepath.IsAbs(r.Dst) {
		private, dest = dest, a.privatePath(dest)
	}
	key := mountKey(r)
	bm := &a.buckets
	bm.mu.Lock()
	defer bm.mu.Unlock()
	if bm.mounted[key] != nil || bm.copied[key] {
		return nil
	}
	sum := sha256.Sum256([]byte(key))
	spec := mounts.MountSpec{
		Dst: dest, URL: r.URL, Mode: mode, ReadOnly: r.ReadOnly,
		CacheDir:   filepath.Join(a.cfg.Home, ".sky", "mount_cache", hex.EncodeToString(sum[:8])),
		CacheBytes: r.CacheBytes, Transfers: r.Transfers,
		Logger: a.log.With("mount", r.Dst),
	}
	if err := os.MkdirAll(spec.CacheDir, 0o700); err != nil {
		return err
	}
	// A mount outlives the job that asked for it: it is tied to the
	// agent's lifetime, not to the request.
	mctx := a.ctx
	if mode == mounts.ModeCopy {
		mctx = ctx
	}
	m, err := mounts.Mount(mctx, spec)
	if err != nil {
		return err
	}
	if mode == mounts.ModeCopy {
		if bm.copied == nil {
			bm.copied = map[string]bool{}
		}
		bm.copied[key] = true
	} else {
		if bm.mounted == nil {
			bm.mounted = map[string]*mounts.Mounted{}
		}
		bm.mounted[key] = m
	}
	if private != "" {
		if err := a.addPrivateMount(private, false); err != nil {
			return err
		}
	}
	a.log.Info("bucket in place", "dst", r.Dst, "url", r.URL, "mode", mode)
	return nil
}

func (a *Agent) saveMounts(refs []api.MountRef, env map[string]string) error {
	var saved savedMounts
	if data, err := os.ReadFile(a.mountsFile()); err == nil {
		_ = json.Unmarshal(data, &saved) // a damaged file is rewritten
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	have := map[string]bool{}
	for _, r := range saved.Mounts {
		have[mountKey(r)] = true
	}
	for _, r := range refs {
		if !have[mountKey(r)] {
			saved.Mounts = append(saved.Mounts, r)
		}
	}
	if saved.Env == nil {
		saved.Env = map[string]string{}
	}
	for k, v := range env {
		saved.Env[k] = v
	}
	data, err := json.Marshal(saved)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(a.mountsFile()), 0o700); err != nil {
		return err
	}
	tmp := a.mountsFile() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, a.mountsFile())
}

// restoreMounts mounts again what an earlier agent process of this node
// mounted; MOUNT_CACHED uploads it left pending resume.
func (a *Agent) restoreMounts() {
	data, err := os.ReadFile(a.mountsFile())
	if err != nil {
		return
	}
	var saved savedMounts
	if err := json.Unmarshal(data, &saved); err != nil {
		a.log.Warn("mounts file is damaged; not mounting again", "err", err)
		return
	}
	var keep []api.MountRef
	for _, r := range saved.Mounts {
		if !strings.EqualFold(r.Mode, string(mounts.ModeCopy)) {
			keep = append(keep, r)
		}
	}
	if err := a.putMounts(a.ctx, keep, saved.Env); err != nil {
		a.log.Warn("mount again after a restart", "err", err)
	}
}

// flushMounts waits until every MOUNT_CACHED file of this node is in its
// bucket, calling progress now and then; it returns what was pending
// when it started.
func (a *Agent) flushMounts(ctx context.Context, progress func(mounts.UploadProgress)) (api.FlushResponse, error) {
	a.buckets.mu.Lock()
	var ms []*mounts.Mounted
	for _, m := range a.buckets.mounted {
		if m.Mode() == mounts.ModeMountCached {
			ms = append(ms, m)
		}
	}
	a.buckets.mu.Unlock()
	var res api.FlushResponse
	for _, m := range ms {
		p := m.Pending()
		res.Files += p.Files
		res.Bytes += p.Bytes
	}
	for _, m := range ms {
		if err := m.Flush(ctx, progress); err != nil {
			return res, fmt.Errorf("upload %s: %w", m.Dst(), err)
		}
	}
	return res, nil
}

func (a *Agent) handleFlush(w http.ResponseWriter, r *http.Request) {
	res, err := a.flushMounts(r.Context(), nil)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// unmountAll takes every bucket down at shutdown, giving MOUNT_CACHED
// uploads a bounded time; what is left stays journaled for the next agent.
func (a *Agent) unmountAll() {
	a.buckets.mu.Lock()
	ms := a.buckets.mounted
	a.buckets.mounted = nil
	a.buckets.mu.Unlock()
	for _, m := range ms {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := m.Unmount(ctx); err != nil {
			a.log.Warn("unmount", "dst", m.Dst(), "err", err)
		}
		cancel()
	}
}

// flushAll waits until the job's nodes have uploaded their MOUNT_CACHED
// writes, writing progress to the job's log; a job is not reported
// finished before its files are in the bucket.
func (a *Agent) flushAll(ctx context.Context, j *job) error {
	cached := false
	for _, m := range j.spec.Mounts {
		if strings.EqualFold(m.Mode, string(mounts.ModeMountCached)) {
			cached = true
		}
	}
	if !cached {
		return nil
	}
	errs := make([]error, len(j.spec.Nodes))
	var wg sync.WaitGroup
	for i, n := range j.spec.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n.Rank == a.cfg.Rank {
				last := time.Time{}
				_, errs[i] = a.flushMounts(ctx, func(p mounts.UploadProgress) {
					if time.Since(last) > 5*time.Second && p.Files > 0 {
						last = time.Now()
						j.runLog.line(fmt.Sprintf("sky-coord: cached mount is still uploading: %d file(s), %d bytes left on node %d", p.Files, p.Bytes, n.Rank))
					}
				})
				return
			}
			resp, err := remoteNode{a: a, base: "http://" + n.Addr}.post(ctx, "/v1/node/flush", struct{}{})
			if err != nil {
				errs[i] = fmt.Errorf("node %d (%s): %w", n.Rank, n.IP, err)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
