package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/transfer"
)

func (a *Agent) handleSync(w http.ResponseWriter, r *http.Request) {
	var req api.NodeSyncRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := a.syncBlobs(r.Context(), req.Blobs); err != nil {
		a.log.Warn("sync failed", "err", err)
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// syncBlobs makes sure ~/sky_workdir exists, then fetches each blob from
// the coordinator and unpacks it to its destination, parents before
// children (so a file mount inside the workdir survives the workdir's
// replacement).
func (a *Agent) syncBlobs(ctx context.Context, blobs []api.BlobRef) error {
	workdir := filepath.Join(a.cfg.Home, "sky_workdir")
	if err := os.MkdirAll(workdir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", workdir, err)
	}
	type item struct {
		ref  api.BlobRef
		dest string
		// private is the absolute destination served from the node's
		// own copy at dest (AgentConfig.PrivateMounts).
		private string
	}
	items := make([]item, 0, len(blobs))
	for _, b := range blobs {
		dest, err := resolveDest(a.cfg.Home, b.Dest, b.File)
		if err != nil {
			return err
		}
		if !blobDigest.MatchString(b.Digest) {
			return fmt.Errorf("blob for %s: digest %q is not a sha256 hex string", b.Dest, b.Digest)
		}
		it := item{ref: b, dest: dest}
		if a.cfg.PrivateMounts && filepath.IsAbs(b.Dest) {
			it.private, it.dest = dest, a.privatePath(dest)
		}
		items = append(items, it)
	}
	slices.SortStableFunc(items, func(x, y item) int {
		return strings.Count(x.dest, string(filepath.Separator)) - strings.Count(y.dest, string(filepath.Separator))
	})
	for _, it := range items {
		if err := a.fetchAndUnpack(ctx, it.ref, it.dest); err != nil {
			return err
		}
		if it.private != "" {
			if err := a.addPrivateMount(it.private, it.ref.File); err != nil {
				return fmt.Errorf("file mount %s: %w", it.private, err)
			}
		}
	}
	return nil
}

var blobDigest = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// resolveDest maps a BlobRef's Dest to a path on this node: "~" and "~/x"
// under home, a relative path under ~/sky_workdir, an absolute path as it
// is. A tree may not replace the home directory or "/".
func resolveDest(home, dest string, file bool) (string, error) {
	var p string
	switch {
	case dest == "":
		return "", errors.New("blob destination is empty")
	case dest == "~" || strings.HasPrefix(dest, "~/"):
		p = filepath.Join(home, strings.TrimPrefix(dest[1:], "/"))
	case strings.HasPrefix(dest, "~"):
		return "", fmt.Errorf("blob destination %q: ~user paths are not supported", dest)
	case filepath.IsAbs(dest):
		p = filepath.Clean(dest)
	default:
		p = filepath.Join(home, "sky_workdir", dest)
	}
	if p == filepath.Clean(home) || p == "/" {
		return "", fmt.Errorf("blob destination %q would replace %s", dest, p)
	}
	return p, nil
}

// fetchAndUnpack downloads blob ref from the coordinator into ~/.sky,
// checks its digest, then unpacks it to dest.
func (a *Agent) fetchAndUnpack(ctx context.Context, ref api.BlobRef, dest string) error {
	url := strings.TrimRight(a.cfg.CoordinatorURL, "/") + "/v1/blobs/" + ref.Digest
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("fetch blob %.12s: %w", ref.Digest, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch blob %.12s from coordinator: %w", ref.Digest, err)
	}
	defer resp.Body.Close() // read only
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch blob %.12s from coordinator: %s", ref.Digest, responseError(resp))
	}
	dir := filepath.Join(a.cfg.Home, ".sky", "blobs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("fetch blob %.12s: %w", ref.Digest, err)
	}
	f, err := os.CreateTemp(dir, ref.Digest+".*")
	if err != nil {
		return fmt.Errorf("fetch blob %.12s: %w", ref.Digest, err)
	}
	defer os.Remove(f.Name()) // a download cache is not kept
	defer f.Close()           // read after the write below; its Close error is moot
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), resp.Body); err != nil {
		return fmt.Errorf("fetch blob %.12s from coordinator: %w", ref.Digest, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, ref.Digest) {
		return fmt.Errorf("fetch blob %.12s: content has digest %.12s: corrupt download", ref.Digest, got)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("fetch blob %.12s: %w", ref.Digest, err)
	}
	// A directory is merged, as SkyPilot's rsync (no --delete) does: what
	// jobs wrote there (outputs, checkpoints) survives the next sync.
	if ref.File {
		err = transfer.Unpack(ctx, f, dest, true)
	} else {
		err = transfer.Merge(ctx, f, dest)
	}
	if err != nil {
		return fmt.Errorf("blob %.12s: %w", ref.Digest, err)
	}
	return nil
}

// responseError describes a non-2xx answer: its status and the message
// of its api.Error body, or the start of the body.
func responseError(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096)) // best effort: for the message only
	msg := strings.TrimSpace(string(b))
	var e api.Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		return resp.Status
	}
	return resp.Status + ": " + msg
}
