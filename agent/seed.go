package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sky-coord/sky-coord/transfer"
)

// Nodes that share a machine (local nodes) need not each write a copy of
// a new tree. With AgentConfig.TreeDir, the first node to need a tree
// writes it there once, and a node whose destination is new mounts it
// copy-on-write (overlayfs: the shared copy below, the node's own changes
// in ~/.sky/overlay above): the node sees a directory of its own, and
// later syncs update it in place like any other. This takes root; without
// it, or where the mount is refused, each node writes its own copy.

// seedRecord is what a node remembers of a seeded destination, to mount
// it again after a restart of the machine.
type seedRecord struct {
	Dest  string `json:"dest"`
	Lower string `json:"lower"`
}

// overlayBase is where the node keeps its layers for dest.
func (a *Agent) overlayBase(dest string) string {
	sum := sha256.Sum256([]byte(dest))
	return filepath.Join(a.cfg.Home, ".sky", "overlay", hex.EncodeToString(sum[:12]))
}

// seedTree gives dest, when it is new (missing or an empty directory),
// the tree m (manifest id) as a copy-on-write view of the machine's copy,
// and records it as synced (state file stateFile), returning the record.
// It reports false, with dest as it was, when it cannot; the caller then
// writes the tree itself. fetch brings every chunk of m into the node's
// store; it is called only when this node writes the machine's copy.
func (a *Agent) seedTree(ctx context.Context, id transfer.ChunkID, m *transfer.Manifest, dest, stateFile string, fetch func() error) (bool, *transfer.Record, error) {
	if a.cfg.TreeDir == "" || !canMountOverlay() || m.Entries[0].Type != transfer.TypeDir || !isNewDir(dest) {
		return false, nil, nil
	}
	lower := filepath.Join(a.cfg.TreeDir, id.String())
	base := a.overlayBase(dest)
	upper, work := filepath.Join(base, "upper"), filepath.Join(base, "work")
	for _, p := range []string{lower, upper, work, dest} {
		if strings.ContainsAny(p, ",:\\\n") {
			return false, nil, nil // not expressible in overlayfs mount options
		}
	}
	start := time.Now()
	if err := a.ensureTree(ctx, id, m, lower, fetch); err != nil {
		return false, nil, err
	}
	treeReady := time.Now()
	if _, err := os.Lstat(base); err == nil {
		// Layers of an earlier view that could not be mounted again
		// (agent start logged why): they may hold a job's files, so they
		// are moved aside, not removed.
		aside := base + "-unmounted-" + time.Now().UTC().Format("20060102T150405")
		if err := os.Rename(base, aside); err != nil {
			return false, nil, err
		}
		a.log.Warn("earlier copy-on-write layers moved aside", "dest", dest, "to", aside)
	}
	for _, d := range []string{upper, work, dest} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return false, nil, err
		}
	}
	if err := mountOverlay(lower, upper, work, dest); err != nil {
		a.log.Warn("copy-on-write view of the shared tree refused; writing this node's own copy", "dest", dest, "err", err)
		_ = os.RemoveAll(base) // best effort: nothing was mounted
		return false, nil, nil
	}
	if stamp, ok := mountStamp(dest); ok {
		// This is the view just mounted: viewOf need not read the mount
		// table to know it.
		if a.views == nil {
			a.views = make(map[string]mountID)
		}
		a.views[dest] = stamp
	}
	mountRec, _ := json.Marshal(seedRecord{Dest: dest, Lower: lower})
	if err := os.WriteFile(filepath.Join(base, "mount.json"), mountRec, 0o600); err != nil {
		return true, nil, err
	}
	mounted := time.Now()
	rec, err := transfer.AdoptCopy(m, dest, lower, lower+".state", transfer.ApplyOptions{StateFile: stateFile})
	if err != nil {
		return true, nil, err
	}
	if layer, err := transfer.LayerFrom(lower, rec); err == nil {
		a.keepLayer(lower, layer) // the next sync's view needs it
	}
	a.log.Info("mounted a copy-on-write view of the machine's copy", "dest", dest,
		"shared_copy", treeReady.Sub(start), "mount", mounted.Sub(treeReady), "adopt", time.Since(mounted))
	return true, rec, nil
}

// ensureTree writes the machine's copy of tree id at lower unless it is
// there: one node writes it, under a lock, the others wait and use it. A
// copy is never changed once written (overlayfs requires it). fetch
// brings the chunks of m into the node's store before it is written.
func (a *Agent) ensureTree(ctx context.Context, id transfer.ChunkID, m *transfer.Manifest, lower string, fetch func() error) error {
	if _, err := os.Stat(lower); err == nil {
		return nil
	}
	if err := os.MkdirAll(a.cfg.TreeDir, 0o755); err != nil {
		return err
	}
	unlock, err := lockFile(lower + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(lower); err == nil {
		return nil
	}
	if err := fetch(); err != nil {
		return err
	}
	if _, err := transfer.Apply(ctx, m, a.chunks, lower, transfer.ApplyOptions{StateFile: lower + ".state"}); err != nil {
		return fmt.Errorf("write the shared copy: %w", err)
	}
	return nil
}

// isNewDir reports whether dest is missing or an empty directory, and no
// mount point. A mount point (a view seedTree mounted, on every re-sync)
// is told by two stats, before dest is opened and listed.
func isNewDir(dest string) bool {
	if isMountPoint(dest) {
		return false
	}
	f, err := os.Open(dest)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	defer f.Close() // read only
	fi, err := f.Stat()
	if err != nil || !fi.IsDir() {
		return false
	}
	_, err = f.Readdirnames(1)
	return errors.Is(err, io.EOF)
}

// viewOf returns what Apply needs to know of dest when it is a live
// copy-on-write view this node mounted (seedTree): the machine's copy
// below it, and which paths the node's own layer may have changed. Apply
// then looks only at those, and a re-sync costs in proportion to what
// the job and earlier syncs changed, not to the size of the tree. It
// returns nil for any other destination, and when the node's layer holds
// more entries than the tree has (files == len(manifest entries)), where
// looking at the tree's paths is cheaper: Apply looks at every path.
// Call it with syncMu held.
func (a *Agent) viewOf(dest string, files int) *transfer.View {
	base := a.overlayBase(dest)
	data, err := os.ReadFile(filepath.Join(base, "mount.json"))
	var rec seedRecord
	if err != nil || json.Unmarshal(data, &rec) != nil || rec.Dest != dest {
		return nil
	}
	upper := filepath.Join(base, "upper")
	stamp, stamped := mountStamp(dest)
	if checked, ok := a.views[dest]; !ok || !stamped || checked != stamp {
		// Not the mount checked last time: read the mount table.
		if !isViewMount(dest, rec.Lower, upper) {
			return nil
		}
		if a.views == nil {
			a.views = make(map[string]mountID)
		}
		if stamped {
			a.views[dest] = stamp
		}
	}
	layer := a.layers[rec.Lower]
	if layer == nil {
		if layer, err = transfer.LoadLayer(rec.Lower, rec.Lower+".state"); err != nil {
			a.log.Warn("the machine's copy has no record; looking at every path", "dest", dest, "err", err)
			return nil
		}
		a.keepLayer(rec.Lower, layer)
	}
	held, hiding, err := upperChanges(upper, files)
	if errors.Is(err, errLayerTooBig) {
		return nil
	}
	if err != nil {
		a.log.Warn("read the node's own layer; looking at every path", "dest", dest, "err", err)
		return nil
	}
	return &transfer.View{Lower: layer, Upper: held, Hiding: hiding}
}

// keepLayer remembers the machine's copy at dir, as read, for the views
// over it. Call it with syncMu held.
func (a *Agent) keepLayer(dir string, l *transfer.Layer) {
	if a.layers == nil || len(a.layers) >= 8 {
		a.layers = make(map[string]*transfer.Layer)
	}
	a.layers[dir] = l
}

// mountID identifies a mount (mountStamp).
type mountID struct {
	mnt          uint64
	major, minor uint32
}

// errLayerTooBig: the upper layer holds more than the walk's limit.
var errLayerTooBig = errors.New("the node's own layer holds more entries than the tree")

// upperChanges walks an overlayfs upper layer and returns the paths it
// holds, and those of them that hide the lower layer below them (a file
// or whiteout, or a directory that is opaque or redirected elsewhere). It
// gives up with errLayerTooBig past limit entries.
func upperChanges(upper string, limit int) (held, hiding []string, err error) {
	if hidesLower(upper) {
		return nil, []string{transfer.RootPath}, nil
	}
	err = filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == upper {
			return err
		}
		if len(held) >= limit {
			return errLayerTooBig
		}
		rel := filepath.ToSlash(p[len(upper)+1:])
		held = append(held, rel)
		if !d.IsDir() || hidesLower(p) {
			hiding = append(hiding, rel)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return held, hiding, nil
}

// remountTrees mounts again, at start, the seeded destinations whose
// mounts are gone (the machine restarted): the node's changes are in its
// upper layer, and without the mount its copy would look empty.
func (a *Agent) remountTrees() {
	dirs, _ := filepath.Glob(filepath.Join(a.cfg.Home, ".sky", "overlay", "*", "mount.json"))
	for _, p := range dirs {
		data, err := os.ReadFile(p)
		var rec seedRecord
		if err != nil || json.Unmarshal(data, &rec) != nil || rec.Dest == "" || isMountPoint(rec.Dest) {
			continue
		}
		base := filepath.Dir(p)
		if err := mountOverlay(rec.Lower, filepath.Join(base, "upper"), filepath.Join(base, "work"), rec.Dest); err != nil {
			a.log.Warn("mount the node's copy again", "dest", rec.Dest, "err", err)
		}
	}
}
