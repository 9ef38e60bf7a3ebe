package spec

import (
	"strings"
	"testing"
)

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "t.yaml", Line: 3, Column: 5, Path: "resources.cpus", Msg: "bad"}, "t.yaml:3:5: resources.cpus: bad"},
		{Error{File: "t.yaml", Line: 3, Msg: "bad"}, "t.yaml:3: bad"},
		{Error{File: "t.yaml", Msg: "bad"}, "t.yaml: bad"},
		{Error{Path: "envs.A", Msg: "bad"}, "envs.A: bad"},
		{Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.e, got, tt.want)
		}
	}
	list := ErrorList{{File: "a", Line: 1, Msg: "x"}, {File: "a", Line: 2, Msg: "y"}}
	if got := list.Error(); got != "a:1: x\na:2: y" {
		t.Errorf("ErrorList.Error() = %q", got)
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"accelerators", "cpus", "memory", "infra", "use_spot", "_internal"}
	tests := []struct{ in, want string }{
		{"acclerators", "accelerators"},
		{"accelerator", "accelerators"},
		{"cpu", "cpus"},
		{"Memory", "memory"},
		{"usespot", "use_spot"},
		{"infr", "infra"},
		{"zzzzzz", ""},
		{"_internl", ""}, // internal keys are never suggested
	}
	for _, tt := range tests {
		if got := suggest(tt.in, known); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestAllErrorsReported: one file with many problems reports each, in
// file order, each with its line.
func TestAllErrorsReported(t *testing.T) {
	src := `name: bad name
num_nodes: -1
resources:
  acclerators: V100
  any_of:
    - infra: aws
    - accelerators: V100:x
envs:
  A: null
run: echo
`
	_, err := Parse("t.yaml", []byte(src), Options{})
	if err == nil {
		t.Fatal("want errors")
	}
	lines := strings.Split(err.Error(), "\n")
	wantPrefixes := []string{
		"t.yaml:1:7: name: invalid name",
		"t.yaml:2:12: num_nodes: must be a positive integer",
		`t.yaml:4:3: resources: unknown field "acclerators"; did you mean "accelerators"?`,
		"t.yaml:7:21: resources.any_of[1].accelerators: invalid accelerator",
		"t.yaml:9:3: envs.A: env A is null and must be set: pass --env A=VALUE",
	}
	if len(lines) != len(wantPrefixes) {
		t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(wantPrefixes), err)
	}
	for i, want := range wantPrefixes {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("error %d = %q\nwant prefix %q", i, lines[i], want)
		}
	}
}
