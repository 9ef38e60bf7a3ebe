package catalog

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// DefaultBaseURL is where SkyPilot publishes its catalogs; a file is at
// <base>/<version>/<cloud>/vms.csv.
const DefaultBaseURL = "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs"

// maxCatalogBytes bounds one download (the full AWS file is a few MB).
const maxCatalogBytes = 256 << 20

// UpdateResult says what Update did for one file.
type UpdateResult struct {
	File  string // "aws/vms.csv"
	Path  string // where it was written
	Bytes int64
	Err   error // the old copy, if any, is kept when set
}

// Update downloads the catalogs of the given clouds (and the common
// accelerator list) into home/catalogs/v8. Each file is validated, written
// aside and renamed into place, so a failed download keeps the old copy.
func Update(ctx context.Context, client *http.Client, base, home string, clouds []string) []UpdateResult {
	if client == nil {
		client = http.DefaultClient
	}
	if base == "" {
		base = DefaultBaseURL
	}
	files := []string{"common/accelerators.csv"}
	for _, c := range clouds {
		files = append(files, c+"/vms.csv")
	}
	var out []UpdateResult
	for _, f := range files {
		res := UpdateResult{File: f, Path: CachePath(home, f)}
		res.Bytes, res.Err = fetch(ctx, client, strings.TrimSuffix(base, "/")+"/"+SchemaVersion+"/"+f, res.Path, f)
		out = append(out, res)
	}
	return out
}

func fetch(ctx context.Context, client *http.Client, url, dst, rel string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("download %s: HTTP %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCatalogBytes+1))
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", url, err)
	}
	if len(data) > maxCatalogBytes {
		return 0, fmt.Errorf("download %s: larger than %d MiB; refusing it", url, maxCatalogBytes>>20)
	}
	if strings.HasSuffix(rel, "vms.csv") {
		offers, err := Parse(strings.Split(rel, "/")[0], data)
		if err != nil {
			return 0, fmt.Errorf("downloaded %s is not a usable %s catalog: %w", url, SchemaVersion, err)
		}
		if len(offers) == 0 {
			return 0, fmt.Errorf("downloaded %s has no instance rows", url)
		}
	} else if _, err := parseAcceleratorNames(data); err != nil {
		return 0, fmt.Errorf("downloaded %s is not CSV: %w", url, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".download-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return 0, err
	}
	return int64(len(data)), os.Rename(tmp.Name(), dst)
}
