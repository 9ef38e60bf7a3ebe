package catalog

import (
	"context"
	"encoding/csv"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sky-coord/sky-coord/spec"
)

func resources(t *testing.T, yaml string) spec.Resources {
	t.Helper()
	f, err := spec.Parse("task.yaml", []byte(yaml), spec.Options{})
	if err != nil {
		t.Fatalf("parse %q: %v", yaml, err)
	}
	return f.Tasks[0].Resources
}

func load(t *testing.T) *Catalog {
	t.Helper()
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOptimizeChoosesTheCheapest(t *testing.T) {
	c := load(t)
	tests := []struct {
		name     string
		yaml     string
		nodes    int
		cloud    string
		instance string
		region   string
		cost     float64 // all nodes, per hour
	}{
		{"V100 on AWS", "resources:\n  infra: aws\n  accelerators: V100:1", 1, "aws", "p3.2xlarge", "us-east-1", 3.06},
		{"A100:8 any cloud: GCP's a2 host plus its GPUs beats p4d", "resources:\n  accelerators: A100:8", 1, "gcp", "a2-highgpu-8g", "europe-west4", 19.4217},
		{"spot compares SpotPrice", "resources:\n  accelerators: A100:8\n  use_spot: true", 1, "aws", "p4d.24xlarge", "us-east-1", 2.4655},
		{"cost is per cluster", "resources:\n  infra: aws\n  accelerators: V100:1", 4, "aws", "p3.2xlarge", "us-east-1", 12.24},
		{"CPU default: 8+ vCPUs, 4x memory", "run: echo", 1, "aws", "m6i.2xlarge", "us-east-1", 0.384},
		{"cpus 4+", "resources:\n  cpus: 4+\n  infra: aws", 1, "aws", "m6i.xlarge", "us-east-1", 0.192},
		{"accelerator mapping: cheapest of the two", "resources:\n  accelerators: {H100: 8, A100: 8}", 1, "gcp", "a2-highgpu-8g", "europe-west4", 19.4217},
		{"accelerator list: the user's order", "resources:\n  accelerators: [H100:8, A100:8]", 1, "aws", "p5.48xlarge", "us-east-1", 55.04},
		{"region pins", "resources:\n  infra: aws/eu-west-1\n  accelerators: T4:1", 1, "aws", "g4dn.xlarge", "eu-west-1", 0.587},
		{"GCP L4 carries its own machine", "resources:\n  infra: gcp\n  accelerators: L4:1", 1, "gcp", "g2-standard-4", "us-central1", 0.70683},
		{"instance type alone", "resources:\n  instance_type: p3.8xlarge", 1, "aws", "p3.8xlarge", "us-east-1", 12.24},
		{"case-insensitive names", "resources:\n  infra: aws\n  accelerators: v100:1", 1, "aws", "p3.2xlarge", "us-east-1", 3.06},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := c.Optimize(Request{Resources: resources(t, tt.yaml), NumNodes: tt.nodes})
			if err != nil {
				t.Fatal(err)
			}
			if len(plan) == 0 {
				t.Fatal("empty plan")
			}
			got := plan[0]
			if got.Cloud != tt.cloud || got.InstanceType != tt.instance || got.Region != tt.region || !near(got.HourlyCost, tt.cost) {
				t.Errorf("plan[0] = %s %s %s $%g; want %s %s %s $%g", got.Cloud, got.InstanceType, got.Region, got.HourlyCost,
					tt.cloud, tt.instance, tt.region, tt.cost)
			}
			for i := 1; i < len(plan) && !strings.Contains(tt.yaml, "["); i++ {
				if plan[i].HourlyCost < plan[i-1].HourlyCost {
					t.Fatalf("plan not sorted by cost at %d: %v then %v", i, plan[i-1], plan[i])
				}
			}
		})
	}
}

// TestOptimizeMatchesABruteForceScan checks every AWS accelerator and count
// against the cheapest row of the CSV found the slow way.
func TestOptimizeMatchesABruteForceScan(t *testing.T) {
	c := load(t)
	data, err := os.ReadFile("data/v8/aws/vms.csv")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(string(data))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	type want struct{ price, spot float64 }
	best := map[string]*want{}
	for _, r := range recs[1:] {
		if r[1] == "" {
			continue
		}
		n, _ := strconv.ParseFloat(r[2], 64)
		key := r[1] + ":" + strconv.FormatFloat(n, 'f', -1, 64)
		price, _ := strconv.ParseFloat(r[6], 64)
		spot, _ := strconv.ParseFloat(r[7], 64)
		w := best[key]
		if w == nil {
			w = &want{price: price}
			best[key] = w
		}
		w.price = min(w.price, price)
		if spot > 0 && (w.spot == 0 || spot < w.spot) {
			w.spot = spot
		}
	}
	for key, w := range best {
		for _, spot := range []bool{false, true} {
			yaml := "resources:\n  infra: aws\n  accelerators: " + key
			if spot {
				yaml += "\n  use_spot: true"
			}
			plan, err := c.Optimize(Request{Resources: resources(t, yaml), NumNodes: 2})
			wantCost := w.price
			if spot {
				wantCost = w.spot
			}
			if spot && w.spot == 0 {
				if err == nil {
					t.Errorf("%s spot: got a plan, but no row has a spot price", key)
				}
				continue
			}
			if err != nil || len(plan) == 0 {
				t.Errorf("%s spot=%v: %v", key, spot, err)
				continue
			}
			if !near(plan[0].HourlyCost, round(2*wantCost)) {
				t.Errorf("%s spot=%v: plan[0] costs %g; the cheapest row costs %g per node", key, spot, plan[0].HourlyCost, wantCost)
			}
		}
	}
}

func TestOptimizeExplainsWhatIsMissing(t *testing.T) {
	c := load(t)
	tests := []struct {
		yaml string
		req  func(*Request)
		want string
	}{
		{"resources:\n  accelerators: A100:3", nil, `no offer for "A100:3"; available counts: 1, 2, 4, 8`},
		{"resources:\n  accelerators: A100-80G:8", nil, `did you mean "A100-80GB"?`},
		{"resources:\n  cpus: 400+", nil, "cpus=400+ leaves none (nearest:"},
		{"resources:\n  infra: gcp\n  accelerators: V100:1", nil, "no host VM in the catalog meets its cpus and memory"},
		{"resources:\n  accelerators: H100:8", func(r *Request) {
			r.Enabled = map[string]bool{"local": true}
			r.Disabled = map[string]string{"aws": "no credentials found", "gcp": "no credentials found"}
		}, "H100:8 is offered only on aws, which is not enabled here (aws: no credentials found)"},
	}
	for _, tt := range tests {
		req := Request{Resources: resources(t, tt.yaml), NumNodes: 1}
		if tt.req != nil {
			tt.req(&req)
		}
		_, err := c.Optimize(req)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error = %v; want it to contain %q", tt.yaml, err, tt.want)
		}
	}
}

func TestBlockedOffersAreLeftOut(t *testing.T) {
	c := load(t)
	r := resources(t, "resources:\n  infra: aws\n  accelerators: V100:1")
	plan, _ := c.Optimize(Request{Resources: r, NumNodes: 1})
	first := plan[0]
	plan2, _ := c.Optimize(Request{Resources: r, NumNodes: 1, Blocked: []Block{{Cloud: "aws", Region: first.Region, Zone: first.Zone}}})
	if plan2[0].Zone == first.Zone || len(plan2) != len(plan)-1 {
		t.Errorf("zone block: plan[0] %s, %d offers (was %d)", plan2[0].Infra(), len(plan2), len(plan))
	}
	plan3, _ := c.Optimize(Request{Resources: r, NumNodes: 1, Blocked: []Block{{Cloud: "aws", Region: first.Region}}})
	for _, ch := range plan3 {
		if ch.Region == first.Region {
			t.Fatalf("region block left %s", ch.Infra())
		}
	}
	plan4, err := c.Optimize(Request{Resources: r, NumNodes: 1, Blocked: []Block{{Cloud: "aws"}}})
	if err != nil || len(plan4) != 0 {
		t.Errorf("cloud block: %d offers, err %v; want none and no error", len(plan4), err)
	}
}

func TestElasticOffers(t *testing.T) {
	c := load(t)
	local := Offer{Cloud: "local", Region: "local", InstanceType: "local", VCPUs: 2, MemoryGiB: 24, Elastic: true}
	plan, err := c.Optimize(Request{Resources: resources(t, "resources:\n  cpus: 2"), NumNodes: 3, Extra: []Offer{local},
		Enabled: map[string]bool{"local": true}})
	if err != nil || len(plan) != 1 || plan[0].Cloud != "local" {
		t.Fatalf("plan %v, err %v; want local only", plan, err)
	}
	if _, err := c.Optimize(Request{Resources: resources(t, "resources:\n  infra: local\n  cpus: 4+"), NumNodes: 1, Extra: []Offer{local}}); err == nil {
		t.Error("4+ CPUs fit a 2-CPU local machine")
	}
}

func TestUpdateKeepsTheOldCopyOnFailure(t *testing.T) {
	good, _ := os.ReadFile("data/v8/aws/vms.csv")
	acc, _ := os.ReadFile("data/v8/common/accelerators.csv")
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case fail:
			http.Error(w, "rate limited", http.StatusTooManyRequests)
		case strings.HasSuffix(r.URL.Path, "/v8/aws/vms.csv"):
			w.Write(good)
		case strings.HasSuffix(r.URL.Path, "/v8/gcp/vms.csv"):
			w.Write([]byte("not,a,catalog\n1,2,3\n"))
		case strings.HasSuffix(r.URL.Path, "/v8/common/accelerators.csv"):
			w.Write(acc)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	home := t.TempDir()
	res := Update(context.Background(), srv.Client(), srv.URL, home, []string{"aws", "gcp"})
	if res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("accelerators/aws: %v / %v", res[0].Err, res[1].Err)
	}
	if res[2].Err == nil || !strings.Contains(res[2].Err.Error(), `missing column "InstanceType"`) && !strings.Contains(res[2].Err.Error(), "missing column") {
		t.Fatalf("gcp junk accepted: %v", res[2].Err)
	}
	if _, err := os.Stat(CachePath(home, "gcp/vms.csv")); err == nil {
		t.Fatal("junk gcp catalog written")
	}
	// Make the cached AWS copy recognisable, then fail a second update.
	p := CachePath(home, "aws/vms.csv")
	edited := strings.Replace(string(good), "p3.2xlarge,V100,1.0,8.0,61.0", "p3.2xlarge,V100,1.0,8.0,62.0", 1)
	os.WriteFile(p, []byte(edited), 0o644)
	fail = true
	res = Update(context.Background(), srv.Client(), srv.URL, home, []string{"aws"})
	if res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "429") {
		t.Fatalf("failed download: %v", res[1].Err)
	}
	if got, _ := os.ReadFile(p); string(got) != edited {
		t.Fatal("the old copy was not kept")
	}
	c, err := Load(home)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sources["aws"] != p || !strings.Contains(c.Sources["gcp"], "embedded") {
		t.Errorf("sources = %v", c.Sources)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".download-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestGPUs(t *testing.T) {
	c := load(t)
	got := c.GPUs(GPUQuery{Name: "a100"})
	if len(got["A100"]) == 0 {
		t.Fatalf("GPUs(a100) = %v", got)
	}
	for _, g := range got["A100"] {
		if g.Cloud == "gcp" && g.Count == 8 && g.InstanceType != "a2-highgpu-8g" {
			t.Errorf("GCP A100:8 host %s", g.InstanceType)
		}
	}
	all := c.GPUs(GPUQuery{Name: "T4", AllRegions: true, Clouds: []string{"aws"}})
	regions := map[string]bool{}
	for _, g := range all["T4"] {
		regions[g.Region] = true
	}
	if len(regions) < 2 {
		t.Errorf("--all-regions listed %v", regions)
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("data/v8/aws/vms.csv")
	f.Add(string(data[:2000]))
	f.Add("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region\nx,,,1,2,0.1,,r\n")
	f.Fuzz(func(t *testing.T, s string) {
		Parse("aws", []byte(s))
	})
}
