package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

// Buckets are put in place by sky-mount, a separate binary that links
// the object-store SDKs (so this agent stays small): one sky-mount
// process per MOUNT or MOUNT_CACHED bucket, serving its FUSE file system
// and answering on a unix socket; COPY runs one that exits when done. The
// agent fetches sky-mount from the coordinator the first time a job needs
// it. MOUNT and MOUNT_CACHED live as long as the agent (and come back
// when it restarts, resuming uploads); COPY is done once per destination
// and URL.

// Bucket modes, as the task file writes them.
const (
	modeCopy        = "COPY"
	modeMount       = "MOUNT"
	modeMountCached = "MOUNT_CACHED"
)

type bucketMounts struct {
	mu      sync.Mutex
	mounted map[string]*mountProc // by mountKey
	copied  map[string]bool
}

// mountProc is one running sky-mount.
type mountProc struct {
	dst, mode string
	cmd       *exec.Cmd
	exited    chan struct{}
	client    *http.Client // over its unix socket
}

// mountSpec is what sky-mount reads on stdin (cmd/sky-mount Spec).
type mountSpec struct {
	Dst        string `json:"dst"`
	URL        string `json:"url"`
	Mode       string `json:"mode"`
	ReadOnly   bool   `json:"read_only,omitempty"`
	CacheDir   string `json:"cache_dir,omitempty"`
	CacheBytes int64  `json:"cache_bytes,omitempty"`
	Transfers  int    `json:"transfers,omitempty"`
}

// uploadProgress is sky-mount's answer to /pending and /flush.
type uploadProgress struct {
	Files int   `json:"Files"`
	Bytes int64 `json:"Bytes"`
}

// mountsFile keeps what this node mounts, and the credentials for it
// (mode 0600), so a restarted agent mounts again.
func (a *Agent) mountsFile() string { return filepath.Join(a.cfg.Home, ".sky", "mounts.json") }

type savedMounts struct {
	Mounts []api.MountRef    `json:"mounts"`
	Env    map[string]string `json:"env,omitempty"`
}

func mountKey(r api.MountRef) string {
	return r.Dst + "\x00" + r.URL + "\x00" + strings.ToUpper(r.Mode)
}

func normMode(m string) (string, error) {
	switch up := strings.ToUpper(m); up {
	case "":
		return modeMount, nil
	case modeCopy, modeMount, modeMountCached:
		return up, nil
	}
	return "", fmt.Errorf("mode %q: use COPY, MOUNT or MOUNT_CACHED", m)
}

// putMounts puts a job's buckets in place on this node.
func (a *Agent) putMounts(ctx context.Context, refs []api.MountRef, env map[string]string) error {
	if len(refs) == 0 {
		return nil
	}
	if err := a.saveMounts(refs, env); err != nil {
		return fmt.Errorf("remember mounts: %w", err)
	}
	for _, r := range refs {
		if err := a.putMount(ctx, r, env); err != nil {
			return fmt.Errorf("file_mounts %s (%s, %s): %w", r.Dst, r.URL, r.Mode, err)
		}
	}
	return nil
}

func (a *Agent) putMount(ctx context.Context, r api.MountRef, env map[string]string) error {
	mode, err := normMode(r.Mode)
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
	if p := bm.mounted[key]; p != nil {
		select {
		case <-p.exited: // it died: mount again
		default:
			return nil
		}
	}
	if bm.copied[key] {
		return nil
	}
	sum := sha256.Sum256([]byte(a.cfg.Home + "\x00" + key))
	id := hex.EncodeToString(sum[:8])
	cacheDir := filepath.Join(a.cfg.Home, ".sky", "mount_cache", id)
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return err
	}
	bin, err := a.mounter(ctx)
	if err != nil {
		return err
	}
	spec, _ := json.Marshal(mountSpec{Dst: dest, URL: r.URL, Mode: mode, ReadOnly: r.ReadOnly,
		CacheDir: cacheDir, CacheBytes: r.CacheBytes, Transfers: r.Transfers})
	socket := filepath.Join(os.TempDir(), "sky-mount-"+id+".sock")
	cmd := exec.Command(bin, "serve", socket)
	cmd.Stdin = bytes.NewReader(spec)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr tailBuffer
	cmd.Stderr = io.MultiWriter(&stderr, logLines{a.log.With("mount", r.Dst)})
	if mode == modeCopy {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Hour)
		defer cancel()
		if err := runCtx(ctx, cmd); err != nil {
			return fmt.Errorf("%v: %s", err, stderr.String())
		}
		if bm.copied == nil {
			bm.copied = map[string]bool{}
		}
		bm.copied[key] = true
		if private != "" {
			if err := a.addPrivateMount(private, false); err != nil {
				return err
			}
		}
		a.log.Info("bucket copied", "dst", r.Dst, "url", r.URL)
		return nil
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	p := &mountProc{dst: r.Dst, mode: mode, cmd: cmd, exited: make(chan struct{}),
		client: &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}}}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && sc.Text() == "ready"
		ready <- ok
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { _ = cmd.Wait(); close(p.exited) }()
	select {
	case ok := <-ready:
		if !ok {
			<-p.exited
			return fmt.Errorf("sky-mount failed: %s", stderr.String())
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		return fmt.Errorf("sky-mount did not mount within 2 minutes: %s", stderr.String())
	}
	if bm.mounted == nil {
		bm.mounted = map[string]*mountProc{}
	}
	bm.mounted[key] = p
	if private != "" {
		if err := a.addPrivateMount(private, false); err != nil {
			return err
		}
	}
	a.log.Info("bucket mounted", "dst", r.Dst, "url", r.URL, "mode", mode)
	return nil
}

func runCtx(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return ctx.Err()
	}
}

// mounter returns the sky-mount binary: beside the agent, else fetched
// once from the coordinator for this node's architecture.
func (a *Agent) mounter(ctx context.Context) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), "sky-mount")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	a.mounterMu.Lock()
	defer a.mounterMu.Unlock()
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	url := strings.TrimRight(a.cfg.CoordinatorURL, "/") + "/v1/agent/binaries/sky-mount?arch=" + runtime.GOARCH
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := a.chunkClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch sky-mount from the coordinator: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetch sky-mount from the coordinator: %s", responseError(resp))
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".sky-mount-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return "", fmt.Errorf("fetch sky-mount from the coordinator: %w", err)
	}
	if err := f.Chmod(0o755); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return p, os.Rename(f.Name(), p)
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
	for _, r := range saved.Mounts {
		if strings.EqualFold(r.Mode, modeCopy) {
			continue
		}
		if err := a.putMount(a.ctx, r, saved.Env); err != nil {
			a.log.Warn("mount again after a restart", "dst", r.Dst, "err", err)
		}
	}
}

// cachedProcs are the running MOUNT_CACHED mounts.
func (a *Agent) cachedProcs() []*mountProc {
	a.buckets.mu.Lock()
	defer a.buckets.mu.Unlock()
	var out []*mountProc
	for _, p := range a.buckets.mounted {
		if p.mode == modeMountCached {
			out = append(out, p)
		}
	}
	return out
}

func (p *mountProc) call(ctx context.Context, method, path string) (uploadProgress, error) {
	var up uploadProgress
	req, err := http.NewRequestWithContext(ctx, method, "http://sky-mount"+path, nil)
	if err != nil {
		return up, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return up, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return up, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if resp.StatusCode == http.StatusNoContent {
		return up, nil
	}
	return up, json.NewDecoder(resp.Body).Decode(&up)
}

// flushMounts waits until every MOUNT_CACHED file of this node is in its
// bucket, calling progress about every 5 s; it returns what was pending
// when it started.
func (a *Agent) flushMounts(ctx context.Context, progress func(uploadProgress)) (api.FlushResponse, error) {
	var res api.FlushResponse
	ps := a.cachedProcs()
	for _, p := range ps {
		if up, err := p.call(ctx, http.MethodGet, "/pending"); err == nil {
			res.Files += up.Files
			res.Bytes += up.Bytes
		}
	}
	for _, p := range ps {
		done := make(chan struct{})
		if progress != nil {
			go func() {
				t := time.NewTicker(5 * time.Second)
				defer t.Stop()
				for {
					select {
					case <-done:
						return
					case <-t.C:
						if up, err := p.call(ctx, http.MethodGet, "/pending"); err == nil {
							progress(up)
						}
					}
				}
			}()
		}
		_, err := p.call(ctx, http.MethodPost, "/flush")
		close(done)
		if err != nil {
			return res, fmt.Errorf("upload %s: %w", p.dst, err)
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
	ps := a.buckets.mounted
	a.buckets.mounted = nil
	a.buckets.mu.Unlock()
	for _, p := range ps {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = p.call(ctx, http.MethodPost, "/unmount")
		cancel()
		select {
		case <-p.exited:
		case <-time.After(35 * time.Second):
			a.log.Warn("sky-mount did not unmount in time; killing it", "dst", p.dst)
			_ = p.cmd.Process.Kill()
		}
	}
}

// flushAll waits until the job's nodes have uploaded their MOUNT_CACHED
// writes, writing progress to the job's log; a job is not reported
// finished before its files are in the bucket.
func (a *Agent) flushAll(ctx context.Context, j *job) error {
	cached := false
	for _, m := range j.spec.Mounts {
		if strings.EqualFold(m.Mode, modeMountCached) {
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
				_, errs[i] = a.flushMounts(ctx, func(p uploadProgress) {
					if p.Files > 0 {
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

// tailBuffer keeps the last few KB written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// logLines passes a child's stderr lines to the agent's log.
type logLines struct {
	l interface{ Info(string, ...any) }
}

func (w logLines) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			w.l.Info("sky-mount", "line", line)
		}
	}
	return len(p), nil
}
