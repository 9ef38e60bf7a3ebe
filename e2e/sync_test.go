package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/sky-coord/sky-coord/testenv"
)

// checksumRun prints "rank path sha256" for every file of the workdir on
// every rank.
const checksumRun = `num_nodes: 4
workdir: ./code
run: |
  find . -type f ! -name 'out-*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sed "s/^/R$SKYPILOT_NODE_RANK /"
  echo "wrote by job" > out-$SKYPILOT_NODE_RANK
`

// TestWorkdirSyncMatchesEveryRank syncs a random tree with nested ignore
// files to 4 local nodes and compares every file's checksum on every rank
// with the source; then a one-file change followed by exec arrives
// everywhere, and what the job wrote stays.
func TestWorkdirSyncMatchesEveryRank(t *testing.T) {
	cli := testenv.NewCLI(t)
	root := filepath.Join(cli.Dir, "code")
	rng := rand.New(rand.NewPCG(7, 11))
	want := map[string]string{} // "./path" → sha256, files that must arrive
	put := func(rel string, data []byte, kept bool) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if kept {
			sum := sha256.Sum256(data)
			want["./"+rel] = hex.EncodeToString(sum[:])
		} else {
			delete(want, "./"+rel)
		}
	}
	for i := 0; i < 300; i++ {
		size := rng.IntN(20000)
		if i%50 == 0 {
			size = 3<<20 + rng.IntN(1<<20) // a few multi-chunk files
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.IntN(256))
		}
		put(fmt.Sprintf("d%d/sub%d/f%d.bin", i%7, i%3, i), data, true)
	}
	put(".gitignore", []byte("*.log\n/build/\n!keep.log\n"), true)
	put("d1/.gitignore", []byte("secret*\n"), true)
	put("a.log", []byte("ignored"), false)
	put("keep.log", []byte("kept by negation"), true)
	put("build/x.o", []byte("ignored dir"), false)
	put("d1/secret.txt", []byte("ignored by nested rule"), false)
	put("d2/secret.txt", []byte("not ignored here"), true)

	cli.WriteFile("sync.yaml", checksumRun)
	res := cli.Run("launch", "-y", "-c", "sync", "sync.yaml")
	if res.Code != 0 {
		t.Fatalf("launch exit %d", res.Code)
	}
	compare := func(out string) {
		t.Helper()
		got := map[int]map[string]string{}
		for _, m := range regexp.MustCompile(`R(\d) ([0-9a-f]{64})  (\S+)`).FindAllStringSubmatch(out, -1) {
			r := int(m[1][0] - '0')
			if got[r] == nil {
				got[r] = map[string]string{}
			}
			got[r][m[3]] = m[2]
		}
		for r := 0; r < 4; r++ {
			var bad []string
			for p, sum := range want {
				if got[r][p] != sum {
					bad = append(bad, p)
				}
			}
			for p := range got[r] {
				if _, ok := want[p]; !ok {
					bad = append(bad, p+" (should not be there)")
				}
			}
			sort.Strings(bad)
			if len(bad) > 0 {
				t.Errorf("rank %d: %d files differ, e.g. %v", r, len(bad), bad[:min(5, len(bad))])
			}
		}
	}
	compare(res.Stdout)
	// The launch started the file watcher: a re-sync looks only at what
	// it saw change, unless the ignore rules changed.
	resync := func(watched bool) {
		t.Helper()
		res := cli.Run("exec", "sync", "sync.yaml")
		if res.Code != 0 {
			t.Fatalf("exec exit %d", res.Code)
		}
		compare(res.Stdout)
		if got := strings.Contains(res.Stderr, "changed since the last sync"); got != watched {
			t.Errorf("the re-sync used the watcher's changes: %v, want %v; it said:\n%s", got, watched, res.Stderr)
		}
		if strings.Contains(res.Stderr, "could not upload") {
			t.Errorf("the watch daemon failed an upload:\n%s", res.Stderr)
		}
	}

	put("d3/sub0/f3.bin", []byte("changed"), true)
	resync(true)
	for r := 0; r < 4; r++ {
		p := filepath.Join(cli.Home, "local", "clusters", "sync", fmt.Sprintf("node-%d", r), "home", "sky_workdir", fmt.Sprintf("out-%d", r))
		if data, err := os.ReadFile(p); err != nil || !strings.Contains(string(data), "wrote by job") {
			t.Errorf("rank %d: the job's output did not survive the re-sync: %v", r, err)
		}
	}

	// More at once: a file removed, one added in a new directory, one
	// changed. Every node builds the manifest from a delta: the head
	// from the client's, the workers from the head's.
	if err := os.Remove(filepath.Join(root, "d4", "sub1", "f4.bin")); err != nil {
		t.Fatal(err)
	}
	delete(want, "./d4/sub1/f4.bin")
	put("new/dir/added.txt", []byte("added"), true)
	put("d3/sub0/f3.bin", []byte("changed again"), true)
	resync(true)
	for r := 0; r < 4; r++ {
		log, err := os.ReadFile(filepath.Join(cli.Home, "local", "clusters", "sync", fmt.Sprintf("node-%d", r), "home", ".sky-coord-agent", "agent.log"))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(log), "delta=true"); n != 2 {
			t.Errorf("rank %d: %d of 2 re-syncs built the manifest from a delta", r, n)
		}
		if strings.Contains(string(log), "does not lead to its manifest") {
			t.Errorf("rank %d: the client's delta was wrong", r)
		}
	}

	// A new ignore rule: the tree is scanned in full, and what it leaves
	// out now is gone from every rank.
	put(".gitignore", []byte("*.log\n/build/\n!keep.log\n/d6/\n"), true)
	for p := range want {
		if strings.HasPrefix(p, "./d6/") {
			delete(want, p)
		}
	}
	resync(false)
	put("d0/sub0/late.txt", []byte("after the rescan"), true)
	resync(true)
	// The watch daemon made the watched re-syncs from the description it
	// holds; after the rescan, from the snapshot the CLI saved.
	if log, err := os.ReadFile(filepath.Join(cli.Home, "watch.log")); err != nil {
		t.Error(err)
	} else if n := strings.Count(string(log), "msg=uploaded component=workdir"); n != 3 {
		t.Errorf("the watch daemon made %d of the 3 watched re-syncs; its log:\n%s", n, log)
	}

	// `server stop` stops the watcher too.
	if res := cli.Run("server", "stop"); res.Code != 0 {
		t.Fatalf("server stop exit %d: %s", res.Code, res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(cli.Home, "watch.sock")); !os.IsNotExist(err) {
		t.Errorf("the watcher's socket is still there after server stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cli.Home, "workdir.sock")); !os.IsNotExist(err) {
		t.Errorf("the workdir socket is still there after server stop: %v", err)
	}
}
