package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
)

func writeConfig(t *testing.T, cfg api.AgentConfig) string {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "agent.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != version+"\n" {
		t.Errorf("version printed %q, want %q", got, version+"\n")
	}
}

func TestRunChecksFlagsAgainstConfig(t *testing.T) {
	cfg := api.AgentConfig{Cluster: "train", Rank: 1, Bind: "127.0.0.1:0", Home: t.TempDir(),
		CoordinatorURL: "http://127.0.0.1:1", Token: "t", Marker: "m"}
	path := writeConfig(t, cfg)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "train", "--rank", "1"}, "--config is required"},
		{[]string{"--cluster", "other", "--rank", "1", "--config", path}, `--cluster "other" does not match`},
		{[]string{"--cluster", "train", "--rank", "0", "--config", path}, "--rank 0 does not match rank 1"},
		{[]string{"--cluster", "train", "--rank", "1", "--config", path + ".missing"}, "read agent config"},
		{[]string{"--cluster", "train", "--rank", "1", "--config", path, "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := run(context.Background(), tt.args, &out, &out)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run %q: %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	t.Setenv(api.MarkerEnv, "") // run sets it; restored after the test
	cfg := api.AgentConfig{Cluster: "train", Rank: 0, Bind: "127.0.0.1:0", Home: t.TempDir(),
		CoordinatorURL: "http://127.0.0.1:1", Token: "t", Marker: "m-" + t.Name()}
	path := writeConfig(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--cluster", "train", "--rank", "0", "--config", path}, &out, &out) }()
	deadline := time.Now().Add(10 * time.Second)
	for os.Getenv(api.MarkerEnv) != cfg.Marker {
		if time.Now().After(deadline) {
			t.Fatal("run did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
