package spec

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// repoRoot is the module root: the nearest directory above the test's
// working directory (the package directory) that holds go.mod.
func repoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return filepath.Dir(dir)
		}
	}
}

// corpusDir is SkyPilot's task files, kept beside the repository.
func corpusDir(t testing.TB) string {
	return filepath.Join(repoRoot(t), "..", "shared", "compat", "skypilot-yamls")
}

// corpusFiles lists the corpus's task files: all but the manifest, the
// template list and the Jinja templates it names.
func corpusFiles(t testing.TB) []string {
	dir := corpusDir(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	skip := map[string]bool{"TEMPLATES.txt": true, "_manifest.json": true}
	if data, err := os.ReadFile(filepath.Join(dir, "TEMPLATES.txt")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line != "" && !strings.HasPrefix(line, "#") {
				skip[line] = true
			}
		}
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && !skip[e.Name()] {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	return files
}

// compatExceptions reads testdata/compat-exceptions.txt: FILE<TAB>reason.
func compatExceptions(t *testing.T) map[string]string {
	data, err := os.ReadFile(filepath.Join("testdata", "compat-exceptions.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, reason, ok := strings.Cut(line, "\t")
		if !ok || strings.TrimSpace(reason) == "" {
			t.Fatalf("compat-exceptions.txt: %q: want FILE<TAB>reason", line)
		}
		out[file] = reason
	}
	return out
}

// TestCompatCorpus parses every SkyPilot task file of the corpus; each must
// be valid, except the documented exceptions, which must fail.
func TestCompatCorpus(t *testing.T) {
	dir := corpusDir(t)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("compat corpus not found at %s (it lives beside the repository, in ../shared/compat/skypilot-yamls)", dir)
	}
	exceptions := compatExceptions(t)
	files := corpusFiles(t)
	if len(files) == 0 {
		t.Fatalf("no task files in %s", dir)
	}
	passed := 0
	for _, name := range files {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		f, err := Parse(name, data, Options{AllowUnset: true})
		if err == nil && len(f.Warnings) == 0 {
			// With a value for each null env and secret (as --env and
			// --secret give), the file is valid without AllowUnset too.
			// The values are valid bucket names: some files use them as one.
			opts := Options{Env: map[string]string{}, Secrets: map[string]string{}}
			value := func(k string) string { return "value-of-" + strings.ReplaceAll(strings.ToLower(k), "_", "-") }
			for _, task := range f.Tasks {
				for _, k := range task.UnsetEnvs {
					opts.Env[k] = value(k)
				}
				for _, k := range task.UnsetSecrets {
					opts.Secrets[k] = value(k)
				}
			}
			if _, err2 := Parse(name, data, opts); err2 != nil {
				t.Errorf("%s: with --env/--secret for its null values, got:\n%v", name, err2)
			}
		}
		reason, isException := exceptions[name]
		switch {
		case err != nil && !isException:
			t.Errorf("%s: want valid, got:\n%v", name, err)
		case err == nil && isException:
			t.Errorf("%s: listed in compat-exceptions.txt (%s) but parses; remove it from the list", name, reason)
		case err == nil:
			passed++
		}
		delete(exceptions, name)
	}
	for name := range exceptions {
		t.Errorf("compat-exceptions.txt names %s, which is not in the corpus", name)
	}
	t.Logf("%d of %d corpus files valid", passed, len(files))
}

// TestCorpusRoundTrip: the normalized YAML of every valid corpus file
// parses back to the same tasks.
func TestCorpusRoundTrip(t *testing.T) {
	dir := corpusDir(t)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("compat corpus not found at %s", dir)
	}
	for _, name := range corpusFiles(t) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		first, err := Parse(name, data, Options{AllowUnset: true})
		if err != nil {
			continue // TestCompatCorpus reports it
		}
		out, err := first.yaml(false)
		if err != nil {
			t.Errorf("%s: YAML: %v", name, err)
			continue
		}
		if len(first.Tasks) == 0 {
			continue // not a task file
		}
		second, err := Parse(name+" (normalized)", out, Options{AllowUnset: true})
		if err != nil {
			t.Errorf("%s: the normalized YAML does not parse:\n%v\n%s", name, err, out)
			continue
		}
		if diff := cmp.Diff(first, second, cmpopts.IgnoreFields(File{}, "Warnings")); diff != "" {
			t.Errorf("%s: normalized YAML parses differently (-want +got):\n%s\n%s", name, diff, out)
		}
	}
}
