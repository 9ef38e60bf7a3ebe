package main

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/api"
)

func TestJobExitCodes(t *testing.T) {
	want := map[api.JobStatus]int{
		api.JobSucceeded: 0, api.JobFailed: 100, api.JobFailedSetup: 100, api.JobFailedDriver: 100,
		api.JobCancelled: 103, api.JobRunning: 101, api.JobPending: 101,
	}
	for s, code := range want {
		if got := jobExitCode(s); got != code {
			t.Errorf("jobExitCode(%s) = %d, want %d", s, got, code)
		}
	}
}

func TestColorPrefix(t *testing.T) {
	old := colorOut
	colorOut = true
	defer func() { colorOut = old }()
	tests := map[string]string{
		"(head, rank=0, pid=1) hi\n": "\x1b[36m(head, rank=0, pid=1)\x1b[0m hi\n",
		"(setup pid=2) (x) y\n":      "\x1b[36m(setup pid=2)\x1b[0m (x) y\n",
		"no prefix (x) y\n":          "no prefix (x) y\n",
		"ERROR: Job 1 failed\n":      "ERROR: Job 1 failed\n",
	}
	for in, want := range tests {
		if got := colorPrefix(in); got != want {
			t.Errorf("colorPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	table(&b, []string{"NAME", "STATUS"}, [][]string{{"train", "UP"}, {"a-much-longer-name", "STOPPED"}})
	want := "NAME                STATUS\ntrain               UP\na-much-longer-name  STOPPED\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}
