// Package catalog holds the instance catalogs of the clouds (SkyPilot's
// catalog format v8), looks up accelerators and prices, and turns a task's
// resources into an ordered list of offers to launch (the optimizer).
//
// It is pure: it reads the bytes it is given (the snapshot embedded in the
// binary, or the files under $SKY_COORD_HOME/catalogs) and never touches a
// cloud. Only Update reaches the network.
package catalog

import (
	"embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// SchemaVersion is the catalog format this package reads.
const SchemaVersion = "v8"

// Clouds are the clouds with a catalog, in the order tables list them.
var Clouds = []string{"aws", "gcp"}

//go:embed data
var snapshot embed.FS

// Offer is one way to get a node: an instance type in one zone, with its
// price per node-hour.
type Offer struct {
	Cloud        string  `json:"cloud"`
	Region       string  `json:"region"`
	Zone         string  `json:"zone,omitempty"`
	InstanceType string  `json:"instance_type"`
	Accelerator  string  `json:"accelerator,omitempty"`
	AccCount     float64 `json:"accelerator_count,omitempty"`
	// GPUMemoryMiB is the memory of one accelerator, when known.
	GPUMemoryMiB int     `json:"gpu_memory_mib,omitempty"`
	VCPUs        float64 `json:"vcpus"`
	MemoryGiB    float64 `json:"memory_gib"`
	Price        float64 `json:"price"`
	// SpotPrice is 0 when the offer has no spot market.
	SpotPrice float64 `json:"spot_price,omitempty"`
	Arch      string  `json:"arch,omitempty"`
	// Elastic offers (local, ssh) give a node all of a machine: cpus and
	// memory requests are met by anything up to VCPUs and MemoryGiB.
	Elastic bool `json:"elastic,omitempty"`
	// Unknown offers (ssh pools) do not say what their machines have
	// until an agent runs there: they meet any request, and the
	// optimizer uses them only when a task names their cloud.
	Unknown bool `json:"unknown,omitempty"`
}

// gpuRow is a GCP accelerator row: the price of GPUs attached to a host VM
// that is priced separately.
type gpuRow struct {
	Name      string
	Count     float64
	MemoryMiB int
	Region    string
	Zone      string
	Price     float64
	SpotPrice float64
}

// Catalog is every cloud's offers.
type Catalog struct {
	offers map[string][]Offer // by cloud: instance types (GCP: host VMs)
	gcpGPU []gpuRow
	// names are the known accelerator names (common/accelerators.csv and
	// every catalog), for suggestions.
	names []string
	// Sources says where each cloud's data came from, for `catalog` output.
	Sources map[string]string
}

// Load reads the catalogs: for each cloud, home/catalogs/v8/<cloud>/vms.csv
// when present, else the snapshot embedded in the binary. An empty home
// means the snapshot only.
func Load(home string) (*Catalog, error) {
	c := &Catalog{offers: map[string][]Offer{}, Sources: map[string]string{}}
	for _, cloud := range Clouds {
		data, src, err := readFile(home, cloud+"/vms.csv")
		if err != nil {
			return nil, err
		}
		if err := c.add(cloud, data); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		c.Sources[cloud] = src
	}
	data, src, err := readFile(home, "common/accelerators.csv")
	if err != nil {
		return nil, err
	}
	names, err := parseAcceleratorNames(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	seen := map[string]bool{}
	add := func(n string) {
		if n != "" && !seen[strings.ToLower(n)] {
			seen[strings.ToLower(n)] = true
			c.names = append(c.names, n)
		}
	}
	for _, n := range names {
		add(n)
	}
	for _, offers := range c.offers {
		for _, o := range offers {
			add(o.Accelerator)
		}
	}
	for _, g := range c.gcpGPU {
		add(g.Name)
	}
	sort.Strings(c.names)
	return c, nil
}

// CachePath is where a downloaded catalog file lives.
func CachePath(home, rel string) string {
	return filepath.Join(home, "catalogs", SchemaVersion, filepath.FromSlash(rel))
}

func readFile(home, rel string) ([]byte, string, error) {
	if home != "" {
		p := CachePath(home, rel)
		data, err := os.ReadFile(p)
		if err == nil {
			return data, p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, p, fmt.Errorf("read catalog: %w", err)
		}
	}
	data, err := snapshot.ReadFile("data/" + SchemaVersion + "/" + rel)
	if err != nil {
		return nil, "", fmt.Errorf("embedded catalog %s: %w", rel, err)
	}
	return data, "embedded snapshot (" + rel + ")", nil
}

// Parse reads one cloud's vms.csv. Columns are found by name, so extra or
// reordered columns are fine; the ones the optimizer needs must be there.
func Parse(cloud string, data []byte) ([]Offer, error) {
	c := &Catalog{offers: map[string][]Offer{}}
	if err := c.add(cloud, data); err != nil {
		return nil, err
	}
	return c.offers[cloud], nil
}

var required = []string{"InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "SpotPrice", "Region"}

func (c *Catalog) add(cloud string, data []byte) error {
	r := csv.NewReader(strings.NewReader(string(data)))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	for _, h := range required {
		if _, ok := col[h]; !ok {
			return fmt.Errorf("missing column %q (is this a SkyPilot %s catalog?)", h, SchemaVersion)
		}
	}
	get := func(rec []string, name string) string {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	line := 1
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		line++
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		num := func(name string) (float64, error) {
			s := get(rec, name)
			if s == "" {
				return 0, nil
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return 0, fmt.Errorf("line %d: column %s: %q is not a number", line, name, s)
			}
			return v, nil
		}
		var vals [5]float64
		for i, name := range []string{"AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "SpotPrice"} {
			if vals[i], err = num(name); err != nil {
				return err
			}
		}
		if get(rec, "Price") == "" {
			continue // no on-demand price: not launchable
		}
		gpuMem := gpuMemoryMiB(get(rec, "GpuInfo"))
		if get(rec, "InstanceType") == "" {
			if cloud == "gcp" && get(rec, "AcceleratorName") != "" {
				c.gcpGPU = append(c.gcpGPU, gpuRow{Name: get(rec, "AcceleratorName"), Count: vals[0], MemoryMiB: gpuMem,
					Region: get(rec, "Region"), Zone: get(rec, "AvailabilityZone"), Price: vals[3], SpotPrice: vals[4]})
			}
			continue
		}
		c.offers[cloud] = append(c.offers[cloud], Offer{
			Cloud: cloud, Region: get(rec, "Region"), Zone: get(rec, "AvailabilityZone"),
			InstanceType: get(rec, "InstanceType"), Accelerator: get(rec, "AcceleratorName"), AccCount: vals[0],
			GPUMemoryMiB: gpuMem, VCPUs: vals[1], MemoryGiB: vals[2], Price: vals[3], SpotPrice: vals[4],
			Arch: get(rec, "Arch"),
		})
	}
}

var gpuMemRe = regexp.MustCompile(`'SizeInMiB':\s*([0-9.]+)`)

// gpuMemoryMiB reads one GPU's memory from a GpuInfo cell, a Python dict
// literal such as {'Gpus': [{'Name': 'T4', 'Count': 4, 'MemoryInfo':
// {'SizeInMiB': 16384}}], 'TotalGpuMemoryInMiB': 65536}.
func gpuMemoryMiB(info string) int {
	m := gpuMemRe.FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return int(v)
}

func parseAcceleratorNames(data []byte) ([]string, error) {
	r := csv.NewReader(strings.NewReader(string(data)))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		return nil, err
	}
	var names []string
	for i, rec := range recs {
		if i == 0 || len(rec) == 0 || rec[0] == "" {
			continue
		}
		names = append(names, strings.TrimSpace(rec[0]))
	}
	return names, nil
}

// Offers returns a cloud's instance offers (GCP: host VMs without the
// GPUs attached to them).
func (c *Catalog) Offers(cloud string) []Offer { return c.offers[cloud] }

// AcceleratorNames are the accelerator names the catalog knows, sorted.
func (c *Catalog) AcceleratorNames() []string { return c.names }
