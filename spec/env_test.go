package spec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseEnvFlag(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"HOME_VAR": "/home/me", "EMPTY": ""}[k]
		return v, ok
	}
	tests := []struct {
		arg       string
		key, val  string
		wantError string
	}{
		{arg: "K=V", key: "K", val: "V"},
		{arg: "K=a=b", key: "K", val: "a=b"},
		{arg: "K=", key: "K", val: ""},
		{arg: "HOME_VAR", key: "HOME_VAR", val: "/home/me"},
		{arg: "EMPTY", key: "EMPTY", val: ""},
		{arg: "MISSING", wantError: "MISSING is not set in your environment; export it, or write MISSING=VALUE"},
		{arg: "1BAD=x", wantError: "not a valid variable name"},
		{arg: "=x", wantError: "not a valid variable name"},
	}
	for _, tt := range tests {
		k, v, err := ParseEnvFlag(tt.arg, lookup)
		if tt.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantError) {
				t.Errorf("ParseEnvFlag(%q) error = %v, want %q", tt.arg, err, tt.wantError)
			}
			continue
		}
		if err != nil || k != tt.key || v != tt.val {
			t.Errorf("ParseEnvFlag(%q) = %q, %q, %v; want %q, %q", tt.arg, k, v, err, tt.key, tt.val)
		}
	}
	if _, _, err := ParseEnvFlag("K", nil); err == nil {
		t.Error("ParseEnvFlag with a nil lookup accepted a bare key")
	}
}

func TestParseDotenv(t *testing.T) {
	src := `# a comment
export A=1
B = spaced  # a trailing comment
C='single $A \' quoted'
D="double\tquoted \"${A}\""
E="multi
line"
F=${A}-${UNDEFINED:-default}-${UNDEFINED}
G=
H=#not-a-comment
'I'=quoted-key
J=${HOST_ONLY}
`
	got, err := ParseDotenvLookup("app.env", []byte(src), func(k string) (string, bool) {
		if k == "HOST_ONLY" {
			return "from-host", true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"A": "1",
		"B": "spaced",
		"C": `single $A ' quoted`,
		"D": "double\tquoted \"1\"",
		"E": "multi\nline",
		"F": "1-default-",
		"G": "",
		"H": "#not-a-comment",
		"I": "quoted-key",
		"J": "from-host",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseDotenvErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{"A=1\nNOVALUE\n", "app.env:2: NOVALUE has no value; write NOVALUE=VALUE (or NOVALUE= for an empty value)"},
		{"A=\"open\n", "app.env:1: the quoted value has no closing \""},
		{"1X=2\n", "app.env:1: \"1X\" is not a valid variable name"},
		{"A='x' junk\n", "app.env:1: unexpected \"junk\" after the closing quote"},
	}
	for _, tt := range tests {
		_, err := ParseDotenv("app.env", []byte(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseDotenv(%q) error = %v, want %q", tt.src, err, tt.want)
		}
	}
}

func TestOverridePrecedence(t *testing.T) {
	src := `envs:
  A: yaml
  B: yaml
  C: yaml
  REQUIRED: null
secrets:
  S1: yaml
  S2: null
  S3: null
run: echo
`
	opts := Options{
		Env:        map[string]string{"A": "flag", "NEW": "flag"},
		EnvFile:    map[string]string{"A": "file", "B": "file", "REQUIRED": "file", "S3": "env-file"},
		Secrets:    map[string]string{"S1": "flag"},
		SecretFile: map[string]string{"S1": "file", "S2": "file"},
	}
	task := parseOne(t, src, opts)
	wantEnvs := map[string]string{"A": "flag", "B": "file", "C": "yaml", "REQUIRED": "file", "NEW": "flag", "S3": "env-file"}
	if diff := cmp.Diff(wantEnvs, task.Envs); diff != "" {
		t.Errorf("envs (-want +got):\n%s", diff)
	}
	wantSecrets := map[string]string{"S1": "flag", "S2": "file", "S3": "env-file"}
	if diff := cmp.Diff(wantSecrets, task.Secrets); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
}

func TestNullEnvNeedsOverride(t *testing.T) {
	src := "envs:\n  HF_TOKEN: null\nrun: echo\n"
	_, err := Parse("t.yaml", []byte(src), Options{})
	want := `t.yaml:2:3: envs.HF_TOKEN: env HF_TOKEN is null and must be set: pass --env HF_TOKEN=VALUE (or --env HF_TOKEN to take it from your environment); for an empty value write HF_TOKEN: ""`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant %s", err, want)
	}
	task := parseOne(t, src, Options{Env: map[string]string{"HF_TOKEN": "hf_x"}})
	if task.Envs["HF_TOKEN"] != "hf_x" {
		t.Errorf("envs = %v", task.Envs)
	}
	task = parseOne(t, src, Options{AllowUnset: true})
	if diff := cmp.Diff([]string{"HF_TOKEN"}, task.UnsetEnvs); diff != "" || task.Envs != nil {
		t.Errorf("AllowUnset: UnsetEnvs diff %s, Envs %v", diff, task.Envs)
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]string{"A": "1", "AB": "2", "B_C": "3"}
	tests := []struct{ in, want string }{
		{"$A", "1"},
		{"${A}", "1"},
		{"$AB", "2"},
		{"${A}B", "1B"},
		{"$B_C/x", "3/x"},
		{"$UNKNOWN", "$UNKNOWN"},
		{"${UNKNOWN}", "${UNKNOWN}"},
		{"${A:-x}", "1:-x}"}, // no defaults: SkyPilot's pattern takes "${A" alone
		{"$$A", "$1"},
		{"pre-$A-post", "pre-1-post"},
		{"no vars", "no vars"},
	}
	for _, tt := range tests {
		if got, _ := substitute(tt.in, vars); got != tt.want {
			t.Errorf("substitute(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSubstituteBounded(t *testing.T) {
	vars := map[string]string{"A": strings.Repeat("x", 1000)}
	if _, ok := substitute(strings.Repeat("$A", 2000), vars); ok {
		t.Error("a 2 MB substitution was accepted")
	}
	src := "envs:\n  A: " + strings.Repeat("x", 1000) + "\nfile_mounts:\n  /x: " + strings.Repeat("$A", 2000) + "\n"
	_, err := Parse("t.yaml", []byte(src), Options{})
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("error = %v, want a too-long value", err)
	}
}

func TestSubstitutionScope(t *testing.T) {
	src := `envs:
  V: val
secrets:
  S: sec
workdir: ./$V
file_mounts:
  /m/$V: s3://b/${S}
service:
  readiness_probe: /$V
resources:
  ports: 8080
  labels:
    l: $V
setup: echo $V
run: echo ${V}
`
	task := parseOne(t, src, Options{})
	got := []string{task.Workdir, task.FileMounts[0].Dst, task.FileMounts[0].Src, task.Service.ReadinessProbe.Path, task.Resources.Labels["l"], task.Setup, task.Run}
	want := []string{"./val", "/m/val", "s3://b/sec", "/val", "$V", "echo $V", "echo ${V}"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSubstitutedNumberStaysAString(t *testing.T) {
	// SkyPilot substitutes in JSON text: "${N}" stays a JSON string, so a
	// field that needs an integer rejects it.
	src := "envs:\n  N: 2\nservice:\n  readiness_probe: /\n  replicas: ${N}\n"
	_, err := Parse("t.yaml", []byte(src), Options{})
	if err == nil || !strings.Contains(err.Error(), "service.replicas: must be an integer") {
		t.Errorf("error = %v, want service.replicas must be an integer", err)
	}
}
