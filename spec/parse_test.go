package spec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parseOne parses a single-task file that must be valid.
func parseOne(t *testing.T, src string, opts Options) *Task {
	t.Helper()
	f, err := Parse("task.yaml", []byte(src), opts)
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	if len(f.Tasks) != 1 {
		t.Fatalf("got %d tasks, want 1", len(f.Tasks))
	}
	return f.Tasks[0]
}

func TestResourcesFields(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want Resources
	}{
		{
			name: "infra cloud/region/zone",
			src:  "resources:\n  infra: aws/us-east-1/us-east-1a",
			want: Resources{Cloud: "aws", Region: "us-east-1", Zone: "us-east-1a", DiskSize: 256},
		},
		{
			name: "infra wildcards and case",
			src:  "resources:\n  infra: '*/*/us-central1-a'",
			want: Resources{Zone: "us-central1-a", DiskSize: 256},
		},
		{
			name: "infra k8s alias keeps the context's slashes",
			src:  "resources:\n  infra: K8S/ctx/with/slashes",
			want: Resources{Cloud: "kubernetes", Region: "ctx/with/slashes", DiskSize: 256},
		},
		{
			name: "legacy cloud is lower-cased",
			src:  "resources:\n  cloud: GCP\n  zone: us-east1-b",
			want: Resources{Cloud: "gcp", Zone: "us-east1-b", DiskSize: 256},
		},
		{
			name: "cpus and memory",
			src:  "resources:\n  cpus: 4+\n  memory: 32GB+",
			want: Resources{CPUs: "4+", Memory: "32+", DiskSize: 256},
		},
		{
			name: "numeric cpus and memory in MiB",
			src:  "resources:\n  cpus: 2\n  memory: 512Mi",
			want: Resources{CPUs: "2", Memory: "0.5", DiskSize: 256},
		},
		{
			name: "accelerator without count",
			src:  "resources:\n  accelerators: V100",
			want: Resources{Accelerators: &Accelerator{Name: "V100", Count: 1}, DiskSize: 256},
		},
		{
			name: "fractional accelerator",
			src:  "resources:\n  accelerators: T4:0.25",
			want: Resources{Accelerators: &Accelerator{Name: "T4", Count: 0.25}, DiskSize: 256},
		},
		{
			name: "accelerator mapping keeps order, first is preferred",
			src:  "resources:\n  accelerators: {A10G: 1, L4:2, A10G:1}",
			want: Resources{
				Accelerators:       &Accelerator{Name: "A10G", Count: 1},
				AcceleratorChoices: []Accelerator{{Name: "A10G", Count: 1}, {Name: "L4", Count: 2}},
				DiskSize:           256,
			},
		},
		{
			name: "accelerator list is ordered",
			src:  "resources:\n  accelerators: [H100:8, A100:8]",
			want: Resources{
				Accelerators:        &Accelerator{Name: "H100", Count: 8},
				AcceleratorChoices:  []Accelerator{{Name: "H100", Count: 8}, {Name: "A100", Count: 8}},
				AcceleratorsOrdered: true,
				DiskSize:            256,
			},
		},
		{
			name: "memory-sized accelerator",
			src:  "resources:\n  accelerators: 80GB+:4",
			want: Resources{Accelerators: &Accelerator{Memory: "80GB+", Count: 4}, DiskSize: 256},
		},
		{
			name: "TPU infers gcp",
			src:  "resources:\n  accelerators: tpu-v5-lite-podslice:4",
			want: Resources{Cloud: "kubernetes", Accelerators: &Accelerator{Name: "tpu-v5-lite-podslice", Count: 4}, DiskSize: 256},
		},
		{
			name: "ports merged and sorted",
			src:  "resources:\n  ports: [9000, '8000-8002', 8003, '10-20']",
			want: Resources{Ports: []string{"10-20", "8000-8003", "9000"}, DiskSize: 256},
		},
		{
			name: "single port as a string",
			src:  "resources:\n  ports: '8080'",
			want: Resources{Ports: []string{"8080"}, DiskSize: 256},
		},
		{
			name: "disk size with unit",
			src:  "resources:\n  disk_size: 1TB\n  disk_tier: HIGH",
			want: Resources{DiskSize: 1024, DiskTier: "high"},
		},
		{
			name: "ephemeral_storage is the old disk_size",
			src:  "resources:\n  ephemeral_storage: 100",
			want: Resources{DiskSize: 100},
		},
		{
			name: "autostop minutes",
			src:  "resources:\n  autostop: 30",
			want: Resources{Autostop: &Autostop{Enabled: true, IdleMinutes: 30}, DiskSize: 256},
		},
		{
			name: "autostop duration",
			src:  "resources:\n  autostop: 1d",
			want: Resources{Autostop: &Autostop{Enabled: true, IdleMinutes: 1440}, DiskSize: 256},
		},
		{
			name: "autostop true",
			src:  "resources:\n  autostop: true",
			want: Resources{Autostop: &Autostop{Enabled: true}, DiskSize: 256},
		},
		{
			name: "job_recovery string",
			src:  "resources:\n  job_recovery: none",
			want: Resources{JobRecovery: &JobRecovery{Strategy: "NONE"}, DiskSize: 256},
		},
		{
			name: "job_recovery single exit code",
			src:  "resources:\n  job_recovery:\n    strategy: null\n    recover_on_exit_codes: 33",
			want: Resources{JobRecovery: &JobRecovery{RecoverOnExitCodes: []int{33}}, DiskSize: 256},
		},
		{
			name: "image_id map with a default",
			src:  "resources:\n  image_id:\n    null: ami-default\n    us-east-1: ami-east",
			want: Resources{ImageID: "ami-default", ImageIDByRegion: map[string]string{"us-east-1": "ami-east"}, DiskSize: 256},
		},
		{
			name: "kubernetes images are container images",
			src:  "resources:\n  infra: k8s\n  image_id: ubuntu:22.04",
			want: Resources{Cloud: "kubernetes", ImageID: "docker:ubuntu:22.04", DiskSize: 256},
		},
		{
			name: "gpus alias",
			src:  "resources:\n  gpus: L4",
			want: Resources{Accelerators: &Accelerator{Name: "L4", Count: 1}, DiskSize: 256},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseOne(t, tt.src, Options{}).Resources
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Resources (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnyOfMergesOuterDefaults(t *testing.T) {
	src := `resources:
  cpus: 8+
  labels: {team: ml, env: prod}
  use_spot: true
  any_of:
    - infra: aws
      labels: {env: dev}
    - infra: gcp
      use_spot: false
      accelerators: {A100:1, V100:1}
`
	r := parseOne(t, src, Options{}).Resources
	want := []Resources{
		{Cloud: "aws", CPUs: "8+", UseSpot: true, Labels: map[string]string{"team": "ml", "env": "dev"}, DiskSize: 256},
		{Cloud: "gcp", CPUs: "8+", Labels: map[string]string{"team": "ml", "env": "prod"}, DiskSize: 256,
			Accelerators:       &Accelerator{Name: "A100", Count: 1},
			AcceleratorChoices: []Accelerator{{Name: "A100", Count: 1}, {Name: "V100", Count: 1}}},
	}
	if diff := cmp.Diff(want, r.AnyOf); diff != "" {
		t.Errorf("AnyOf (-want +got):\n%s", diff)
	}
	cands, ordered := r.Candidates()
	if ordered {
		t.Error("any_of candidates reported as ordered")
	}
	var names []string
	for _, c := range cands {
		acc := "-"
		if c.Accelerators != nil {
			acc = c.Accelerators.String()
		}
		names = append(names, c.Cloud+"/"+acc)
	}
	if diff := cmp.Diff([]string{"aws/-", "gcp/A100:1", "gcp/V100:1"}, names); diff != "" {
		t.Errorf("Candidates (-want +got):\n%s", diff)
	}
	if r.Accelerators != nil {
		t.Errorf("preferred accelerator = %+v, want the first candidate's (none)", r.Accelerators)
	}
}

func TestOrderedCandidates(t *testing.T) {
	src := "resources:\n  ordered:\n    - accelerators: H100:8\n    - accelerators: A100:8\n"
	r := parseOne(t, src, Options{}).Resources
	cands, ordered := r.Candidates()
	if !ordered || len(cands) != 2 || cands[0].Accelerators.Name != "H100" {
		t.Errorf("Candidates() = %+v, %v; want H100 then A100, ordered", cands, ordered)
	}
}

func TestNumGPUsPerNode(t *testing.T) {
	tests := []struct {
		src  string
		want int
	}{
		{"run: echo", 0},
		{"resources:\n  accelerators: A100:8", 8},
		{"resources:\n  accelerators: T4:0.5", 1},
		{"resources:\n  accelerators: V100:1.5", 2},
		{"resources:\n  accelerators: tpu-v2-8", 0},
		{"resources:\n  accelerators: Inferentia:6", 0},
		{"resources:\n  accelerators: {L4:4, A10G:2}", 4},
		{"resources:\n  any_of:\n    - accelerators: H100:2\n    - accelerators: A100:4", 2},
	}
	for _, tt := range tests {
		if got := parseOne(t, tt.src, Options{}).NumGPUsPerNode(); got != tt.want {
			t.Errorf("%q: NumGPUsPerNode() = %d, want %d", tt.src, got, tt.want)
		}
	}
}

func TestTaskDefaults(t *testing.T) {
	got := parseOne(t, "name: t", Options{})
	want := &Task{Name: "t", NumNodes: 1, Resources: Resources{DiskSize: DefaultDiskSizeGB}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestServiceDefaults(t *testing.T) {
	got := parseOne(t, "service:\n  readiness_probe: /health\nresources:\n  ports: 8080", Options{}).Service
	want := &Service{
		ReadinessProbe: ReadinessProbe{Path: "/health", InitialDelaySeconds: 1200, TimeoutSeconds: 15},
		ReplicaPolicy:  ReplicaPolicy{MinReplicas: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestServicePort(t *testing.T) {
	tests := []struct {
		src     string
		want    int
		wantErr string
	}{
		{"service:\n  readiness_probe: /\nresources:\n  ports: 8080", 8080, ""},
		{"service:\n  readiness_probe: /\n  ports: 9000\nresources:\n  ports: [8080, 9000]", 9000, ""},
		{"service:\n  readiness_probe: /\n", 0, "open exactly one port"},
		{"service:\n  readiness_probe: /\nresources:\n  ports: 8000-8001", 0, "open exactly one port"},
		{"service:\n  readiness_probe: /\nresources:\n  any_of:\n    - ports: 1\n    - ports: 2", 0, "different ports"},
	}
	for _, tt := range tests {
		got, err := parseOne(t, tt.src, Options{}).ServicePort()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: ServicePort() error = %v, want %q", tt.src, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: ServicePort() = %d, %v; want %d", tt.src, got, err, tt.want)
		}
	}
}

func TestStorageNameInferredFromSource(t *testing.T) {
	src := `file_mounts:
  /a:
    source: s3://bucket-a/
  /b:
    source: cos://us-east/bucket-b
  /c:
    source: https://acct.blob.core.windows.net/container-c
`
	var got []string
	for _, fm := range parseOne(t, src, Options{}).FileMounts {
		got = append(got, fm.Storage.Name)
	}
	if diff := cmp.Diff([]string{"bucket-a", "bucket-b", "container-c"}, got); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func TestFileMountsSortedByDst(t *testing.T) {
	src := "file_mounts:\n  /z: ./z\n  /a: ./a\n  ~/m: s3://b/m\n"
	var got []string
	for _, fm := range parseOne(t, src, Options{}).FileMounts {
		got = append(got, fm.Dst)
	}
	if diff := cmp.Diff([]string{"/a", "/z", "~/m"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMultiDocument(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		wantName  string
		wantExec  string
		wantTasks []string
	}{
		{"single task", "name: a\nrun: x", "a", "", []string{"a"}},
		{"name only is a task", "name: a", "a", "", []string{"a"}},
		{"header and tasks", "name: p\n---\nname: a\n---\nname: b", "p", "", []string{"a", "b"}},
		{"serial header", "name: p\nexecution: serial\n---\nname: a", "p", "serial", []string{"a"}},
		{"no header", "name: a\nrun: x\n---\nname: b\nrun: y", "", "", []string{"a", "b"}},
		{"empty documents are skipped", "---\nname: a\nrun: x\n---\n---\n", "a", "", []string{"a"}},
		{"empty file", "", "", "", []string{""}},
		{"comments only", "# nothing here\n", "", "", []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("f.yaml", []byte(tt.src), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, task := range f.Tasks {
				names = append(names, task.Name)
			}
			if f.Name != tt.wantName || f.Execution != tt.wantExec {
				t.Errorf("Name, Execution = %q, %q; want %q, %q", f.Name, f.Execution, tt.wantName, tt.wantExec)
			}
			if diff := cmp.Diff(tt.wantTasks, names); diff != "" {
				t.Errorf("tasks (-want +got):\n%s", diff)
			}
		})
	}
}
