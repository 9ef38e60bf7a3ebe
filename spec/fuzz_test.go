package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input makes Parse panic or hang, every error carries a
// message, and a valid file's normalized YAML parses again.
func FuzzParse(f *testing.F) {
	for _, name := range corpusFiles(f) {
		if data, err := os.ReadFile(filepath.Join(corpusDir(f), name)); err == nil {
			f.Add(data)
		}
	}
	for _, dir := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
		for _, path := range files {
			if data, err := os.ReadFile(path); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.yaml", data, Options{AllowUnset: true})
		if err != nil {
			list, ok := err.(ErrorList)
			if !ok || len(list) == 0 {
				t.Fatalf("error %T %v, want a non-empty ErrorList", err, err)
			}
			for _, e := range list {
				if e.Msg == "" {
					t.Fatalf("error without a message: %+v", e)
				}
			}
			return
		}
		if _, err := json.Marshal(file); err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		out, err := file.yaml(false)
		if err != nil {
			t.Fatalf("YAML: %v", err)
		}
		if len(file.Tasks) == 0 {
			return // not a task file: nothing to round-trip
		}
		if _, err := Parse("normalized.yaml", out, Options{AllowUnset: true}); err != nil {
			t.Fatalf("the normalized YAML of a valid file does not parse:\n%v\n--- input\n%s\n--- normalized\n%s", err, data, out)
		}
	})
}
