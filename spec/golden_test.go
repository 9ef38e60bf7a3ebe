package spec

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenOptions reads the test-only directives at the top of a testdata
// file: `# env: K=V`, `# secret: K=V`, `# env-file: FILE`,
// `# allow-unset`.
func goldenOptions(t *testing.T, data []byte) Options {
	t.Helper()
	var opts Options
	set := func(m *map[string]string, kv string) {
		k, v, _ := strings.Cut(kv, "=")
		if *m == nil {
			*m = map[string]string{}
		}
		(*m)[k] = v
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "# ") {
			break
		}
		d := strings.TrimPrefix(line, "# ")
		switch {
		case strings.HasPrefix(d, "env: "):
			set(&opts.Env, strings.TrimPrefix(d, "env: "))
		case strings.HasPrefix(d, "secret: "):
			set(&opts.Secrets, strings.TrimPrefix(d, "secret: "))
		case strings.HasPrefix(d, "env-file: "):
			name := strings.TrimPrefix(d, "env-file: ")
			raw, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseDotenv(name, raw)
			if err != nil {
				t.Fatal(err)
			}
			opts.EnvFile = m
		case d == "allow-unset":
			opts.AllowUnset = true
		}
	}
	return opts
}

// checkGolden compares got with testdata/NAME.golden (rewritten with
// -update).
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	golden := strings.TrimSuffix(path, ".yaml") + ".golden"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./spec -run %s -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", golden, diff)
	}
}

// TestGoldenValid: each testdata/valid/*.yaml parses, and its normalized
// YAML is the golden file.
func TestGoldenValid(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "valid", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no testdata/valid/*.yaml")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(filepath.Base(path), data, goldenOptions(t, data))
			if err != nil {
				t.Fatalf("want valid, got:\n%v", err)
			}
			out, err := f.YAML()
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, path, out)
		})
	}
}

// TestGoldenInvalid: each testdata/invalid/*.yaml fails, and its errors
// (one per line, FILE:LINE:COLUMN: ...) are the golden file.
func TestGoldenInvalid(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no testdata/invalid/*.yaml")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(filepath.Base(path), data, goldenOptions(t, data))
			if err == nil {
				t.Fatal("want errors, got a valid file")
			}
			if _, ok := err.(ErrorList); !ok {
				t.Fatalf("error is %T, want ErrorList", err)
			}
			checkGolden(t, path, []byte(err.Error()+"\n"))
		})
	}
}
