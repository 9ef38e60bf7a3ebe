package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestJSONRoundTrip: a parsed file (the task travels as JSON from the CLI
// to the server) survives encoding/json unchanged.
func TestJSONRoundTrip(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "valid", "*.yaml"))
	for _, name := range corpusFiles(t) {
		files = append(files, filepath.Join(corpusDir(t), name))
	}
	n := 0
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		opts := Options{AllowUnset: true}
		if filepath.Dir(path) == filepath.Join("testdata", "valid") {
			opts = goldenOptions(t, data)
		}
		f, err := Parse(filepath.Base(path), data, opts)
		if err != nil {
			continue
		}
		n++
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatalf("%s: Marshal: %v", path, err)
		}
		var back File
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: Unmarshal: %v", path, err)
		}
		// nil and empty slices and maps are the same task.
		if diff := cmp.Diff(f, &back, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(File{}, "Warnings")); diff != "" {
			t.Errorf("%s: JSON round trip (-want +got):\n%s", path, diff)
		}
	}
	if n == 0 {
		t.Fatal("no file parsed")
	}
}

// TestJSONFieldNames pins the wire names other packages and the server
// rely on.
func TestJSONFieldNames(t *testing.T) {
	task := &Task{
		Name: "t", NumNodes: 2, Workdir: ".",
		Resources: Resources{Cloud: "aws", CPUs: "4+", Accelerators: &Accelerator{Name: "A100", Count: 8}, DiskSize: 256},
		Envs:      map[string]string{"A": "1"},
		FileMounts: []FileMount{
			{Dst: "/d", Src: "s3://b"},
			{Dst: "/s", Storage: &Storage{Name: "b", Mode: ModeMount, Persistent: true}},
		},
		Run: "echo",
	}
	b, err := json.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"t","workdir":".","num_nodes":2,"resources":{"cloud":"aws","cpus":"4+","accelerators":{"name":"A100","count":8},"disk_size":256},"envs":{"A":"1"},"file_mounts":[{"dst":"/d","src":"s3://b"},{"dst":"/s","storage":{"name":"b","persistent":true,"mode":"MOUNT"}}],"run":"echo"}`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
