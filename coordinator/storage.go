package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/coordinator/fsm"
	"github.com/sky-coord/sky-coord/coordinator/state"
	"github.com/sky-coord/sky-coord/mounts"
	"github.com/sky-coord/sky-coord/providers"
	"github.com/sky-coord/sky-coord/spec"
	"github.com/sky-coord/sky-coord/transfer"
)

// Buckets, as SkyPilot handles them (see skypilot-semantics §4):
//
//   - `/dst: s3://b/p` (or gs://, r2://) is copied to the nodes (COPY).
//   - A storage object with a bucket `source` mounts that bucket in its
//     mode; sky-coord did not create it and never deletes it.
//   - A storage object with a `name` and a local `source` creates the
//     bucket (when missing) and uploads the source; with a `name` only it
//     creates an empty bucket or reuses one sky-coord created. Buckets
//     sky-coord created are deleted by `storage delete`, and by `down`
//     when `persistent: false`.
//
// Everything is checked and prepared before the launch is recorded, so a
// missing bucket or missing credentials fail the launch before anything
// is provisioned.

var s3Name = regexp.MustCompile(`^[a-z0-9][-a-z0-9.]{1,61}[a-z0-9]$`)

// storeScheme maps a storage `store` to its URL scheme.
func storeScheme(store string) (string, error) {
	switch strings.ToLower(store) {
	case "s3":
		return "s3", nil
	case "gcs":
		return "gs", nil
	case "r2":
		return "r2", nil
	}
	return "", fmt.Errorf("store %q is not supported by sky-coord yet (use s3, gcs or r2)", store)
}

// defaultStore picks a store when a storage object names none: the one
// whose credentials this coordinator has, S3 first.
func defaultStore() (string, error) {
	if found, _ := providers.FindCredentials("aws"); found || os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != "" {
		return "s3", nil
	}
	if found, _ := providers.FindCredentials("gcp"); found || os.Getenv("STORAGE_EMULATOR_HOST") != "" {
		return "gcs", nil
	}
	return "", errors.New("no object store credentials found (AWS or GCP); set `store:` and the store's credentials in the coordinator's environment")
}

// preparedMounts is what a launch's bucket mounts need.
type preparedMounts struct {
	refs     []api.MountRef
	storages []api.Storage
}

// prepareMounts checks every bucket mount of t, creates and fills the
// buckets it asks for, and returns what the nodes mount.
func (s *Server) prepareMounts(ctx context.Context, t *spec.Task, sources map[string]string) (*preparedMounts, error) {
	out := &preparedMounts{}
	for _, fm := range t.FileMounts {
		switch {
		case fm.Storage != nil:
			ref, st, err := s.prepareStorage(ctx, fm.Dst, fm.Storage, sources)
			if err != nil {
				return nil, fmt.Errorf("file_mounts %s: %w", fm.Dst, err)
			}
			out.refs = append(out.refs, ref)
			if st != nil {
				out.storages = append(out.storages, *st)
			}
		case isBucketURL(fm.Src):
			if err := checkBucketURL(ctx, fm.Src); err != nil {
				return nil, fmt.Errorf("file_mounts %s: %w", fm.Dst, err)
			}
			out.refs = append(out.refs, api.MountRef{Dst: fm.Dst, URL: fm.Src, Mode: string(mounts.ModeCopy)})
		}
	}
	return out, nil
}

func isBucketURL(s string) bool {
	for _, p := range []string{"s3://", "gs://", "r2://"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// checkBucketURL makes sure a source bucket exists and can be read.
func checkBucketURL(ctx context.Context, url string) error {
	st, _, err := mounts.Open(ctx, url)
	if err != nil {
		return err
	}
	defer st.Close()
	ok, err := st.BucketExists(ctx)
	if err != nil {
		return fmt.Errorf("check %s: %w", url, err)
	}
	if !ok {
		return fmt.Errorf("source bucket %s does not exist; create it or fix the URL", url)
	}
	return nil
}

func (s *Server) prepareStorage(ctx context.Context, dst string, sto *spec.Storage, sources map[string]string) (api.MountRef, *api.Storage, error) {
	mode := strings.ToUpper(sto.Mode)
	if mode == "" {
		mode = string(mounts.ModeMount)
	}
	if _, err := mounts.ParseMode(mode); err != nil {
		return api.MountRef{}, nil, err
	}
	ref := api.MountRef{Dst: dst, Mode: mode}
	if sto.Mount != nil {
		ref.ReadOnly = sto.Mount.ReadOnly
	}
	if mc := sto.MountCached; mc != nil {
		ref.ReadOnly = ref.ReadOnly || mc.ReadOnly
		ref.Transfers = mc.Transfers
	}
	// A bucket URL as the source: mount it as it is.
	if isBucketURL(sto.Source) {
		if err := checkBucketURL(ctx, sto.Source); err != nil {
			return ref, nil, err
		}
		loc, err := mounts.ParseURL(sto.Source)
		if err != nil {
			return ref, nil, err
		}
		if loc.Prefix != "" && mode != string(mounts.ModeCopy) {
			return ref, nil, fmt.Errorf("%s mode mounts a whole bucket, not %s; use mode: COPY for part of a bucket", mode, sto.Source)
		}
		ref.URL = sto.Source
		st := &api.Storage{Name: loc.Bucket, Store: schemeStore(loc.Scheme), URL: loc.Scheme + "://" + loc.Bucket, Persistent: true}
		return ref, st, nil
	}
	if sto.Name == "" {
		return ref, nil, errors.New("a storage object needs a `name` (the bucket to create or reuse) or a bucket `source`")
	}
	store := sto.Store
	if store == "" {
		var err error
		if store, err = s.knownStore(sto.Name); err != nil {
			return ref, nil, err
		}
	}
	scheme, err := storeScheme(store)
	if err != nil {
		return ref, nil, err
	}
	if scheme != "gs" && !s3Name.MatchString(sto.Name) {
		return ref, nil, fmt.Errorf("bucket name %q is invalid: use 3-63 lower-case letters, digits, '-' and '.'", sto.Name)
	}
	url := scheme + "://" + sto.Name
	ref.URL = url
	bucket, _, err := mounts.Open(ctx, url)
	if err != nil {
		return ref, nil, err
	}
	defer bucket.Close()
	exists, err := bucket.BucketExists(ctx)
	if err != nil {
		return ref, nil, fmt.Errorf("check %s: %w", url, err)
	}
	var known *api.Storage
	s.read(func(st *state.Store) {
		if v, ok := st.Storages[sto.Name]; ok {
			cp := *v
			known = &cp
		}
	})
	managed := known != nil && known.Managed
	switch {
	case !exists:
		if err := bucket.CreateBucket(ctx); err != nil {
			return ref, nil, fmt.Errorf("create bucket %s: %w", url, err)
		}
		managed = true
	case !managed && sto.Source == "":
		return ref, nil, fmt.Errorf("bucket %s exists but sky-coord did not create it; to mount it, give it as the source (source: %s)", url, url)
	}
	if sto.Source != "" {
		// The CLI sent the local source as chunks; write its files into
		// the bucket.
		id, ok := sources[sto.Name]
		if !ok {
			return ref, nil, fmt.Errorf("the local source %s of bucket %s was not uploaded with the launch; use the sky-coord CLI", sto.Source, url)
		}
		if err := s.fillBucket(ctx, bucket, id); err != nil {
			return ref, nil, fmt.Errorf("upload %s to %s: %w", sto.Source, url, err)
		}
	}
	st := &api.Storage{Name: sto.Name, Store: schemeStore(scheme), URL: url, Managed: managed, Persistent: sto.Persistent}
	if known != nil {
		st.CreatedAt = known.CreatedAt
	}
	return ref, st, nil
}

// knownStore is the store of a bucket sky-coord knows, else the default.
func (s *Server) knownStore(name string) (string, error) {
	var store string
	s.read(func(st *state.Store) {
		if v, ok := st.Storages[name]; ok {
			store = v.Store
		}
	})
	if store != "" {
		return store, nil
	}
	return defaultStore()
}

func schemeStore(scheme string) string {
	if scheme == "gs" {
		return "gcs"
	}
	return scheme
}

// recordStorages notes the buckets a cluster mounts.
func (s *Server) recordStorages(cluster string, sts []api.Storage) {
	now := time.Now().UTC()
	for _, st := range sts {
		if st.CreatedAt.IsZero() {
			st.CreatedAt = now
		}
		if _, err := s.apply(fsm.StoragePutType, fsm.StoragePut{Storage: st, Cluster: cluster}); err != nil {
			s.log.Warn("record storage", "name", st.Name, "err", err)
		}
	}
}

// mountEnv is the part of this coordinator's environment the nodes need
// to reach the buckets of refs: credentials and endpoints for the schemes
// used, nothing else.
func mountEnv(refs []api.MountRef) map[string]string {
	var keys []string
	for _, r := range refs {
		switch {
		case strings.HasPrefix(r.URL, "s3://"), strings.HasPrefix(r.URL, "r2://"):
			keys = append(keys, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
				"AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE", "AWS_PROFILE",
				"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "R2_ACCOUNT_ID", "CLOUDFLARE_ACCOUNT_ID")
		case strings.HasPrefix(r.URL, "gs://"):
			keys = append(keys, "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")
		}
	}
	if len(keys) == 0 {
		return nil
	}
	env := map[string]string{}
	for _, k := range keys {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	return env
}

// deleteEphemeralStorages deletes, after a cluster's teardown, the
// buckets it mounted that sky-coord created with `persistent: false` and
// no other cluster uses.
func (s *Server) deleteEphemeralStorages(ctx context.Context, cluster string) {
	var doomed []api.Storage
	s.read(func(st *state.Store) {
		for _, v := range st.Storages {
			if v.Managed && !v.Persistent && slices.Equal(v.Clusters, []string{cluster}) {
				doomed = append(doomed, *v)
			}
		}
	})
	for _, st := range doomed {
		if err := deleteBucket(ctx, st); err != nil {
			s.event(cluster, fmt.Sprintf("Could not delete bucket %s (persistent: false): %v; delete it with `sky-coord storage delete %s`", st.URL, err, st.Name))
			continue
		}
		if _, err := s.apply(fsm.StorageRemovedType, fsm.StorageRemoved{Name: st.Name}); err != nil {
			s.log.Warn("record storage removed", "name", st.Name, "err", err)
		}
		s.event(cluster, fmt.Sprintf("Deleted bucket %s (persistent: false).", st.URL))
	}
}

func deleteBucket(ctx context.Context, st api.Storage) error {
	bucket, _, err := mounts.Open(ctx, st.URL)
	if err != nil {
		return err
	}
	defer bucket.Close()
	return bucket.DeleteBucket(ctx)
}

func (s *Server) handleStorages(w http.ResponseWriter, r *http.Request) {
	var out []api.Storage
	s.read(func(st *state.Store) { out = st.ListStorages() })
	if out == nil {
		out = []api.Storage{}
	}
	writeJSON(w, http.StatusOK, out)
}

// handleStorageDelete deletes a bucket sky-coord created (or forgets one
// it did not), unless a cluster still mounts it.
func (s *Server) handleStorageDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var st *api.Storage
	s.read(func(ss *state.Store) {
		if v, ok := ss.Storages[name]; ok {
			cp := *v
			st = &cp
		}
	})
	if st == nil {
		s.fail(w, fmt.Errorf("storage %q is not known (see `sky-coord storage ls`): %w", name, state.ErrNotFound))
		return
	}
	var live []string
	s.read(func(ss *state.Store) {
		for _, c := range st.Clusters {
			if _, ok := ss.Clusters[c]; ok {
				live = append(live, c)
			}
		}
	})
	if len(live) > 0 {
		s.fail(w, fmt.Errorf("storage %q is mounted by cluster(s) %s; `down` them first: %w", name, strings.Join(live, ", "), state.ErrConflict))
		return
	}
	if st.Managed {
		if err := deleteBucket(r.Context(), *st); err != nil {
			writeError(w, http.StatusBadGateway, fmt.Errorf("delete bucket %s: %w", st.URL, err))
			return
		}
	}
	if _, err := s.apply(fsm.StorageRemovedType, fsm.StorageRemoved{Name: name}); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"deleted_bucket": st.Managed})
}

// fillBucket writes the files of an uploaded manifest into a bucket, one
// object per file (key = its path in the source tree).
func (s *Server) fillBucket(ctx context.Context, bucket mounts.Store, manifestID string) error {
	id, err := transfer.ParseChunkID(manifestID)
	if err != nil {
		return err
	}
	m, err := transfer.FetchManifest(ctx, id, s.chunks)
	if err != nil {
		return err
	}
	root := m.Root()
	for _, e := range m.Entries {
		if e.Type != transfer.TypeFile {
			continue
		}
		key := e.Path
		if e.Path == transfer.RootPath && root != nil && root.Type == transfer.TypeFile {
			return errors.New("a bucket source must be a directory")
		}
		r := &chunkReader{ctx: ctx, store: s.chunks, chunks: e.Chunks}
		err := bucket.Write(ctx, key, r, e.Size)
		r.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// chunkReader reads a file's chunks from a store, one after another.
type chunkReader struct {
	ctx    context.Context
	store  transfer.Source
	chunks []transfer.ChunkRef
	cur    io.ReadCloser
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for {
		if c.cur == nil {
			if len(c.chunks) == 0 {
				return 0, io.EOF
			}
			rc, err := c.store.Get(c.ctx, c.chunks[0].ID)
			if err != nil {
				return 0, err
			}
			c.cur, c.chunks = rc, c.chunks[1:]
		}
		n, err := c.cur.Read(p)
		if err == io.EOF {
			c.cur.Close()
			c.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *chunkReader) Close() error {
	if c.cur != nil {
		return c.cur.Close()
	}
	return nil
}

// flushMounts waits, before a cluster is stopped or torn down, until every
// file its jobs wrote under MOUNT_CACHED mounts is in the bucket, with
// progress in the cluster's events. It reports false when the flush
// failed or timed out and the stop should wait for the next round.
func (s *Server) flushMounts(ctx context.Context, c *api.Cluster) bool {
	if c.Status != api.ClusterUp && c.Status != api.ClusterInit || len(c.Nodes) == 0 || !s.usesCachedMounts(c.Name) {
		return true
	}
	token := s.agentToken(c.Name, c.Incarnation)
	fctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for _, n := range c.Nodes {
		if n.Lost != "" {
			continue
		}
		var res api.FlushResponse
		s.event(c.Name, fmt.Sprintf("Waiting for node %d's cached mounts to finish uploading...", n.Rank))
		if err := s.agents.do(fctx, http.MethodPost, n.AgentAddr, token, "/v1/node/flush", nil, &res); err != nil {
			var se *statusError
			if errors.As(err, &se) || ctx.Err() != nil {
				s.event(c.Name, fmt.Sprintf("Cached mounts of node %d are not all uploaded (will retry): %v", n.Rank, err))
				return false
			}
			// An agent that cannot be reached has no mounts left to wait for.
			s.log.Warn("flush cached mounts: node unreachable", "cluster", c.Name, "node", n.Rank, "err", err)
			continue
		}
		if res.Files > 0 {
			s.event(c.Name, fmt.Sprintf("Node %d uploaded %d cached file(s) (%d bytes) to their buckets.", n.Rank, res.Files, res.Bytes))
		}
	}
	return true
}

// usesCachedMounts reports whether a job of the cluster mounts a bucket
// in MOUNT_CACHED mode.
func (s *Server) usesCachedMounts(cluster string) bool {
	found := false
	s.read(func(st *state.Store) {
		for _, j := range st.Jobs[cluster] {
			for _, m := range j.Mounts {
				if strings.EqualFold(m.Mode, string(mounts.ModeMountCached)) {
					found = true
				}
			}
		}
	})
	return found
}
