package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/client"
	"github.com/sky-coord/sky-coord/spec"
	"github.com/sky-coord/sky-coord/transfer"
	"github.com/sky-coord/sky-coord/workdir"
)

// exitError carries a process exit code to main.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// taskFlags are the task options shared by launch, exec and validate.
type taskFlags struct {
	envs, secrets       []string
	envFile, secretFile string
	numNodes            int
}

func (f *taskFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.envs, "env", nil, "set an env var: K=V, or K to take the value from your environment (repeatable)")
	fl.StringVar(&f.envFile, "env-file", "", "read env vars from a dotenv file (lower precedence than --env)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "set a secret: K=V or K (repeatable)")
	fl.StringVar(&f.secretFile, "secret-file", "", "read secrets from a dotenv file")
}

// options turns the flags into spec.Options.
func (f *taskFlags) options() (spec.Options, error) {
	var o spec.Options
	parsePairs := func(args []string) (map[string]string, error) {
		m := map[string]string{}
		for _, a := range args {
			k, v, err := spec.ParseEnvFlag(a, os.LookupEnv)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	}
	readFile := func(path string) (map[string]string, error) {
		if path == "" {
			return nil, nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return spec.ParseDotenv(path, data)
	}
	var err error
	if o.Env, err = parsePairs(f.envs); err != nil {
		return o, err
	}
	if o.Secrets, err = parsePairs(f.secrets); err != nil {
		return o, err
	}
	if o.EnvFile, err = readFile(f.envFile); err != nil {
		return o, err
	}
	if o.SecretFile, err = readFile(f.secretFile); err != nil {
		return o, err
	}
	return o, nil
}

// loadTasks parses a task file with the flags' overrides. Errors come back
// one per line, FILE:LINE:COLUMN first, as an exit-2 error.
func loadTasks(path string, f *taskFlags, allowUnset bool) (*spec.File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &exitError{code: 2, msg: fmt.Sprintf("read task file: %v", err)}
	}
	opts, err := f.options()
	if err != nil {
		return nil, &exitError{code: 2, msg: err.Error()}
	}
	opts.AllowUnset = allowUnset
	file, err := spec.Parse(path, data, opts)
	if err != nil {
		return nil, &exitError{code: 2, msg: err.Error()}
	}
	for _, w := range file.Warnings {
		fmt.Fprintf(os.Stderr, "%s (warning)\n", w)
	}
	return file, nil
}

// loadTask is loadTasks for commands that run one task.
func loadTask(path string, f *taskFlags) (*spec.Task, error) {
	file, err := loadTasks(path, f, false)
	if err != nil {
		return nil, err
	}
	if len(file.Tasks) != 1 {
		return nil, &exitError{code: 2, msg: fmt.Sprintf("%s: holds %d tasks (a pipeline); this command runs one task", path, len(file.Tasks))}
	}
	t := file.Tasks[0]
	if f.numNodes > 0 {
		t.NumNodes = f.numNodes
	}
	return t, nil
}

// expandHome resolves a leading ~ and makes p absolute against the
// working directory, as SkyPilot does for workdir and local sources.
func expandHome(p string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		p = filepath.Join(home, strings.TrimPrefix(p, "~"))
	}
	return filepath.Abs(p)
}

func isURI(s string) bool { return strings.Contains(s, "://") }

// uploadFiles packs the workdir (and, with mounts, the local file_mounts)
// and uploads what the coordinator does not have yet.
func uploadFiles(ctx context.Context, c *client.Client, t *spec.Task, mounts bool) ([]api.BlobRef, error) {
	var refs []api.BlobRef
	if t.Workdir != "" {
		dir, err := expandHome(t.Workdir)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(dir)
		if err != nil || !st.IsDir() {
			return nil, &exitError{code: 2, msg: fmt.Sprintf("workdir %q: not a directory (%v); fix `workdir:` in the task file", t.Workdir, errOrNotDir(err))}
		}
		up, err := uploadTree(ctx, c, dir, "workdir")
		if err != nil {
			return nil, fmt.Errorf("upload workdir %s: %w", dir, err)
		}
		refs = append(refs, api.BlobRef{Digest: up.digest, Dest: "~/sky_workdir", Delta: up.delta})
	}
	if !mounts {
		return refs, nil
	}
	for _, fm := range t.FileMounts {
		if fm.Src == "" || isURI(fm.Src) {
			continue // buckets: the coordinator and the agents handle them
		}
		src, err := expandHome(fm.Src)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, &exitError{code: 2, msg: fmt.Sprintf("file_mounts %q: source %q: %v; fix the path in the task file", fm.Dst, fm.Src, err)}
		}
		up, err := uploadTree(ctx, c, src, fm.Dst)
		if err != nil {
			return nil, fmt.Errorf("upload file_mounts source %s: %w", src, err)
		}
		refs = append(refs, api.BlobRef{Digest: up.digest, Dest: fm.Dst, File: !st.IsDir(), Delta: up.delta})
	}
	return refs, nil
}

func errOrNotDir(err error) error {
	if err != nil {
		return err
	}
	return errors.New("it is a file")
}

// uploaded is what uploadTree sent: the manifest's id, and the delta to
// it from the last description of the tree, when there is a small one.
type uploaded struct {
	digest string
	delta  []byte // an encoded transfer.Delta (api.BlobRef.Delta)
}

// uploadTree describes a directory (or one file) as a manifest of
// content-defined chunks and uploads the chunks the coordinator lacks,
// then the manifest; it returns the manifest's id. Where the watch daemon
// watches the directory, only the paths it saw change are looked at
// again, against the last description (a snapshot under
// $SKY_COORD_HOME/cache), and the delta from that description comes
// back too: a head that synced it needs no more. The daemon does that
// itself from the description it holds (package workdir) when it can;
// else this process does. Otherwise every file is
// read, with a stat cache beside the snapshot that spares re-reading
// unchanged ones. A progress bar shows on a terminal when there is much to
// send.
func uploadTree(ctx context.Context, c *client.Client, src, what string) (uploaded, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return uploaded{}, err
	}
	sum := sha256.Sum256([]byte(abs))
	name := hex.EncodeToString(sum[:8])
	cachePath := filepath.Join(skyHome(), "cache", "stat-"+name)
	snapPath := filepath.Join(skyHome(), "cache", "tree-"+name)
	// Describing a big tree allocates much that lives until the end: a
	// collector at its default pace would run many times for nothing.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	start := time.Now()
	bar := newSyncBar(what)
	defer bar.done()
	root, err := filepath.EvalSymlinks(abs)
	if err == nil {
		if fi, serr := os.Stat(root); serr != nil || !fi.IsDir() {
			root = "" // a file, or gone: described in full below
		}
	}
	if root != "" && !watchDisabled() {
		// The watch daemon holds the last description: it builds the
		// next one and uploads it warm.
		addr, token := c.Credentials()
		res, err := workdir.Ask(ctx, workdirSocket(), workdir.Request{Program: version, Op: "upload",
			Root: root, Snapshot: snapPath, Addr: addr, Token: token}, bar.update)
		switch {
		case err == nil:
			bar.done()
			printUploaded(what, res.Files, res.Bytes, res.Sent, time.Since(start), res.Changed)
			return uploaded{digest: res.Digest, delta: res.Delta}, nil
		case ctx.Err() != nil:
			return uploaded{}, ctx.Err()
		case errors.Is(err, workdir.ErrOtherBuild) || watcherPredatesWorkdir():
			// A daemon left from before an upgrade would hand every
			// upload back: replace it. The new one knows no changes
			// yet, so this upload scans in full (with the stat cache).
			if restartWatcher(ctx) {
				fmt.Fprintf(os.Stderr, "%s Replaced the file watcher left by another build of sky-coord: this upload scans %s in full.\n", dim("⚙︎"), what)
			}
		case !errors.Is(err, workdir.ErrFallback):
			fmt.Fprintf(os.Stderr, "%s The watch daemon could not upload %s (%v); uploading it from here.\n", dim("⚙︎"), what, err)
		}
	}
	var watch treeWatch
	if root != "" {
		watch = watchTree(ctx, root, snapPath)
	}
	uopts := transfer.UploadOptions{Parallel: 8, Progress: bar.update}
	var tree *transfer.Tree
	var id transfer.ChunkID
	var st transfer.UploadStats
	var cache *transfer.StatCache
	var base transfer.ChunkID // the snapshot's manifest, which the rebuild spends
	var baseErr error
	if watch.incremental() {
		base, baseErr = watch.snap.ManifestID()
	}
	if watch.incremental() && baseErr == nil {
		// The few changed files are read again without the stat cache
		// (loading and saving it costs more than reading them), and sent
		// over HTTP: opening the coordinator's store here reads the
		// index of all it holds. What this allocates is little, and the
		// process ends soon: the collector waits for a bound.
		gc, limit := debug.SetGCPercent(-1), debug.SetMemoryLimit(256<<20)
		tree, id, st, err = transfer.RebuildAndUpload(ctx, watch.snap, watch.changes.Paths,
			transfer.BuildOptions{Progress: bar.update}, c.Chunks(), uopts)
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(limit)
		if errors.Is(err, transfer.ErrRescan) || errors.Is(err, transfer.ErrBadManifest) {
			tree, err = nil, nil // described in full below
		}
	}
	if tree == nil && err == nil {
		cache = transfer.LoadStatCache(cachePath)
		tree, id, st, err = transfer.BuildAndUpload(ctx, src, transfer.BuildOptions{Cache: cache, Progress: bar.update}, c.ChunkStore(ctx), uopts)
	}
	if err != nil {
		return uploaded{}, err
	}
	bar.done()
	changed := -1 // scanned in full
	if cache == nil {
		changed = len(watch.changes.Paths)
	}
	printUploaded(what, tree.Stats.Files, tree.Stats.Bytes, st.Bytes, time.Since(start), changed)
	if err := os.MkdirAll(filepath.Dir(cachePath), 0o700); err == nil {
		// Only speed-ups: a lost cache re-reads files, a lost snapshot
		// stats them all.
		if cache != nil {
			_ = cache.Save(cachePath)
		}
		if watch.root != "" && watch.save(tree, snapPath) {
			// The daemon reads it while the job runs, not on the
			// next upload.
			_, _ = workdir.Ask(ctx, workdirSocket(), workdir.Request{Program: version, Op: "load", Root: root, Snapshot: snapPath}, nil)
		}
	}
	return uploaded{digest: id.String(), delta: workdir.DeltaFor(tree, base, id)}, nil
}

// printUploaded says what an upload sent and how long it took; changed
// is the number of paths looked at again, or negative after a full scan.
func printUploaded(what string, files int, bytes, sent int64, took time.Duration, changed int) {
	how := ""
	if changed >= 0 {
		how = fmt.Sprintf(" (%s changed since the last sync)", plural(changed, "path"))
	}
	fmt.Fprintf(os.Stderr, "%s Uploaded %s: %d files, %s; %s new in %s%s.\n", dim("⚙︎"), what,
		files, sizeString(bytes), sizeString(sent), took.Round(time.Millisecond), how)
}

// sizeString is a byte count for people: 8 B, 12.3 KB, 210.1 MB.
func sizeString(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1e6:
		return fmt.Sprintf("%.1f KB", float64(n)/1e3)
	case n < 1e9:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}

// uploadStorageSources uploads the local sources of storage objects (as
// chunks, like a workdir); the coordinator writes them into the buckets.
func uploadStorageSources(ctx context.Context, c *client.Client, t *spec.Task) (map[string]string, error) {
	var out map[string]string
	for _, fm := range t.FileMounts {
		st := fm.Storage
		if st == nil || st.Source == "" || isURI(st.Source) {
			continue
		}
		if st.Name == "" {
			return nil, &exitError{code: 2, msg: fmt.Sprintf("file_mounts %s: a local source (%s) needs a bucket `name` to upload it to", fm.Dst, st.Source)}
		}
		src, err := expandHome(st.Source)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
			return nil, &exitError{code: 2, msg: fmt.Sprintf("file_mounts %s: source %q must be a directory (%v)", fm.Dst, st.Source, errOrNotDir(err))}
		}
		up, err := uploadTree(ctx, c, src, "bucket "+st.Name)
		if err != nil {
			return nil, fmt.Errorf("upload %s for bucket %s: %w", src, st.Name, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[st.Name] = up.digest
	}
	return out, nil
}
