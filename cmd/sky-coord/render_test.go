package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/api"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func at(ago time.Duration) *time.Time {
	t := now.Add(-ago)
	return &t
}

func TestStatusTable(t *testing.T) {
	var b bytes.Buffer
	renderClusters(&b, []*api.Cluster{
		{Name: "train", Infra: "local", Resources: "3x(local)", Status: api.ClusterUp, LaunchedAt: now.Add(-3 * time.Minute)},
		{Name: "dev", Infra: "local", Resources: "1x(gpus=V100:1, cpus=4+, local)", Status: api.ClusterInit, Error: "provision: no capacity", LaunchedAt: now.Add(-26 * time.Hour)},
		{Name: "old", Infra: "local", Resources: "2x(local)", Status: api.ClusterStopped, LaunchedAt: now.Add(-90 * time.Minute)},
	}, now)
	golden(t, "status", b.Bytes())
}

func TestQueueTable(t *testing.T) {
	var b bytes.Buffer
	renderQueue(&b, "train", []*api.Job{
		{ID: 3, User: "alice", Status: api.JobPending, SubmittedAt: now.Add(-5 * time.Second), Resources: "3x[CPU:0.5]", LogDir: "3-task"},
		{ID: 2, Name: "fail", User: "alice", Status: api.JobFailed, SubmittedAt: now.Add(-2 * time.Minute), StartedAt: at(119 * time.Second), EndedAt: at(100 * time.Second), Resources: "3x[CPU:0.5]", LogDir: "2-fail"},
		{ID: 1, Name: "train", User: "alice", Status: api.JobRunning, SubmittedAt: now.Add(-3 * time.Hour), StartedAt: at(3 * time.Hour), Resources: "2x[V100:1]", LogDir: "1-train"},
	}, now)
	golden(t, "queue", b.Bytes())
}
