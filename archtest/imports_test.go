// Package archtest checks the import rules of DESIGN.md over `go list`.
package archtest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const mod = "github.com/sky-coord/sky-coord/"

// allowed lists, per package, the project packages it may import. Packages
// not listed (cmd/*, testenv, e2e, archtest, examples) may import anything.
// Beyond DESIGN.md: transfer (workdir archives, shared by client and
// agent) and procscan (finding a node's processes by their environment
// marker, shared by agent and the local provider; and the mount points a
// process sees, shared by mounts and the local provider) and ptystream (the
// framing of `sky-coord ssh` sessions, shared by agent, coordinator and
// client) are stdlib-only L0
// packages, and fswatch (the per-user daemon that tells `sky-coord exec`
// which workdir paths changed since its last sync) is an L0 package on the
// standard library and golang.org/x/sys; workdir (the same daemon's
// uploads of workdirs from the descriptions it holds) joins fswatch to
// transfer and the client; bootstrap and providers/* may use
// api for the agent's wire types; providers/* may use catalog (what
// providers may) for the offers they make beside the catalogs (the local
// machine, ssh pools).
var allowed = map[string][]string{
	"spec":              {},
	"transfer":          {},
	"procscan":          {},
	"ptystream":         {},
	"fswatch":           {},
	"catalog":           {"spec"},
	"api":               {"spec"},
	"providers":         {"spec", "catalog"},
	"bootstrap":         {"api", "spec"},
	"mounts":            {"spec", "procscan"},
	"coordinator/state": {"spec", "api"},
	"coordinator/fsm":   {"coordinator/state", "api", "spec"},
	"providers/local":   {"providers", "bootstrap", "api", "spec", "procscan", "catalog"},
	"agent":             {"api", "spec", "mounts", "transfer", "procscan", "ptystream"},
	"coordinator":       {"coordinator/fsm", "coordinator/state", "api", "spec", "catalog", "providers", "bootstrap", "ptystream", "transfer", "mounts"},
	"client":            {"api", "spec", "ptystream", "transfer"},
	"workdir":           {"api", "client", "fswatch", "transfer"},
}

// pure packages may not reach a clock, randomness, the network or files.
var pure = map[string]bool{"coordinator/state": true, "coordinator/fsm": true, "spec": true}

var impureStd = []string{"math/rand", "math/rand/v2", "crypto/rand", "os", "os/exec", "net", "net/http", "io/ioutil", "syscall"}

type pkg struct {
	ImportPath string
	Dir        string
	Imports    []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	for _, p := range listPackages(t) {
		name := strings.TrimPrefix(p.ImportPath, mod)
		rule, ok := allowed[name]
		if !ok {
			if strings.HasPrefix(name, "providers/") {
				rule = allowed["providers/local"]
			} else {
				continue
			}
		}
		ok2 := map[string]bool{}
		for _, r := range rule {
			ok2[r] = true
		}
		for _, imp := range p.Imports {
			if pure[name] {
				for _, bad := range impureStd {
					if imp == bad {
						t.Errorf("%s imports %s: it must stay free of clocks, randomness and I/O", name, imp)
					}
				}
			}
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			dep := strings.TrimPrefix(imp, mod)
			if !ok2[dep] {
				t.Errorf("%s imports %s; allowed: %v (DESIGN.md)", name, dep, rule)
			}
		}
	}
}

var clockCall = regexp.MustCompile(`\btime\.(Now|Since|Until|Sleep|After|Tick|NewTimer|NewTicker)\(`)

// TestStateMachineHasNoClock checks the FSM and store never read the clock:
// times come in with the log entries.
func TestStateMachineHasNoClock(t *testing.T) {
	for _, p := range listPackages(t) {
		name := strings.TrimPrefix(p.ImportPath, mod)
		if name != "coordinator/state" && name != "coordinator/fsm" {
			continue
		}
		files := append([]string(nil), p.GoFiles...)
		sort.Strings(files)
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if m := clockCall.Find(data); m != nil {
				t.Errorf("%s/%s calls %s: pass times in through the log entry instead", name, f, m)
			}
		}
	}
}
