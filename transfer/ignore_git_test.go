package transfer

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Names and patterns the oracle test draws from: chosen so that patterns
// hit often, with the characters gitignore treats specially.
var (
	oracleNames = []string{
		"a", "b", "ab", "foo", "foo.log", "keep.log", "bar.txt", "build", "x.o", ".env",
		"doc", "sub", "a b", "#x", "!y", "[ab]", "c[d", "x ", "deep", "ba", "Foo", "f*o", `q\r`,
	}
	oraclePatterns = []string{
		"*.log", "!keep.log", "/build", "build/", "foo", "a/**/b", "**/foo", "doc/*.txt", "*.o",
		`\#x`, `\!y`, "a?", "[ab]", "[!a]*", "foo/", "/a/b", "**/build/**", "x ", `x\ `, "#x",
		"", "!*/", "*", "!foo", "sub/", "**/", "[a-c]*", "b/**", "sub/*", "!sub/a", "/*", "!/doc",
		"deep/**/x.o", "**", "a/", "!a/", "*/b", "/sub/**/ab", "[[:alpha:]]", "[[:digit:]]*",
		"c[d", `c\[d`, "f*o", `f\*o`, "Foo", "ba*", "!ba", "*b", "?", "??", "doc/", "doc/**/",
		"**/sub", "ab/", "!**/keep.log", `q\\r`, "[]]", "[!]]*", "a[", "*.txt/", "/*/*", "x.o/",
		"sub//", "!", "/", "\\", "  ", "\ufeffa",
	}
)

// gitFiles lists the files git sees as untracked and not ignored.
func gitFiles(t *testing.T, dir string) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-o", "--exclude-standard", "-z")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v: %s", err, stderr.String())
	}
	var files []string
	for f := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	slices.Sort(files)
	return files
}

// walkFiles lists what walkTree keeps that git would list: files and
// links, not directories.
func walkFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	_, err := walkTree(context.Background(), dir, func(rel string, fi fs.FileInfo) error {
		if !fi.IsDir() {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

func randomIgnoreFile(rng *rand.Rand) string {
	var b strings.Builder
	if rng.IntN(10) == 0 {
		b.WriteString("\ufeff")
	}
	for range 1 + rng.IntN(5) {
		b.WriteString(oraclePatterns[rng.IntN(len(oraclePatterns))])
		if rng.IntN(8) == 0 {
			b.WriteString("\r")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestIgnoreMatchesGit compares the files a walk keeps with those
// `git ls-files --others --exclude-standard` lists, over random trees with
// random nested .gitignore files and .git/info/exclude. In .skyignore mode
// every directory gets the same lines in a .skyignore and a .gitignore
// (git reads the one, the walk the other) and no exclude file.
func TestIgnoreMatchesGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	t.Parallel()
	cases := 120
	if testing.Short() {
		cases = 30
	}
	for seed := range cases {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(seed), 99))
			dir := t.TempDir()
			cmd := exec.Command("git", "init", "-q", dir)
			cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("git init: %v: %s", err, out)
			}
			sky := seed%4 == 3
			var dirs []string
			var fill func(rel string, depth int)
			fill = func(rel string, depth int) {
				dirs = append(dirs, rel)
				for range 2 + rng.IntN(6) {
					name := oracleNames[rng.IntN(len(oracleNames))]
					p := filepath.Join(dir, rel, name)
					if _, err := os.Lstat(p); err == nil {
						continue
					}
					if depth < 3 && rng.IntN(3) == 0 {
						mustNo(t, os.Mkdir(p, 0o755))
						fill(filepath.Join(rel, name), depth+1)
						continue
					}
					if rng.IntN(12) == 0 {
						mustNo(t, os.Symlink("a", p))
						continue
					}
					mustNo(t, os.WriteFile(p, []byte(name), 0o644))
				}
			}
			fill(".", 0)
			for _, d := range dirs {
				if rng.IntN(2) == 0 {
					continue
				}
				data := randomIgnoreFile(rng)
				mustNo(t, os.WriteFile(filepath.Join(dir, d, GitIgnoreFile), []byte(data), 0o644))
				if sky {
					mustNo(t, os.WriteFile(filepath.Join(dir, d, SkyIgnoreFile), []byte(data), 0o644))
				}
			}
			if sky {
				// The root's .skyignore switches the walk to .skyignore files.
				if _, err := os.Lstat(filepath.Join(dir, SkyIgnoreFile)); err != nil {
					mustNo(t, os.WriteFile(filepath.Join(dir, SkyIgnoreFile), []byte("\n"), 0o644))
					mustNo(t, os.WriteFile(filepath.Join(dir, GitIgnoreFile), []byte("\n"), 0o644))
				}
			} else if rng.IntN(2) == 0 {
				mustNo(t, os.WriteFile(filepath.Join(dir, ".git", "info", "exclude"), []byte(randomIgnoreFile(rng)), 0o644))
			}
			want, got := gitFiles(t, dir), walkFiles(t, dir)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("files kept (-git +walk):\n%s\nignore files:\n%s", diff, dumpIgnoreFiles(t, dir))
			}
		})
	}
}

func dumpIgnoreFiles(t *testing.T, dir string) string {
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Name() == GitIgnoreFile || d.Name() == SkyIgnoreFile || rel == filepath.Join(".git", "info", "exclude") {
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s: %q\n", rel, data)
		}
		if d.IsDir() && d.Name() == ".git" && rel != ".git" {
			return filepath.SkipDir
		}
		return nil
	})
	return b.String()
}

// TestIgnoreRulesAgainstGitCheckIgnore runs the table of TestIgnoreRules
// through `git check-ignore`, so the table itself is held to git.
func TestIgnoreRulesAgainstGitCheckIgnore(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	t.Parallel()
	for _, tt := range ignoreRuleTests {
		dir := t.TempDir()
		env := append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		cmd := exec.Command("git", "init", "-q", dir)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git init: %v: %s", err, out)
		}
		for i, f := range tt.files {
			name := filepath.Join(dir, filepath.FromSlash(f.base), GitIgnoreFile)
			if i == 0 && tt.exclude {
				name = filepath.Join(dir, ".git", "info", "exclude")
			}
			mustNo(t, os.MkdirAll(filepath.Dir(name), 0o755))
			mustNo(t, os.WriteFile(name, []byte(f.data), 0o644))
		}
		p := filepath.Join(dir, filepath.FromSlash(tt.path))
		mustNo(t, os.MkdirAll(filepath.Dir(p), 0o755))
		if tt.dir {
			mustNo(t, os.MkdirAll(p, 0o755))
		} else {
			mustNo(t, os.WriteFile(p, nil, 0o644))
		}
		cmd = exec.Command("git", "check-ignore", "-q", "--no-index", tt.path)
		cmd.Dir = dir
		cmd.Env = env
		err := cmd.Run()
		var gitSays bool
		switch code := exitCode(err); code {
		case 0:
			gitSays = true
		case 1:
		default:
			t.Fatalf("%s: git check-ignore: %v", tt.name, err)
		}
		if gitSays != tt.want {
			t.Errorf("%s: git check-ignore says ignored=%v, the table says %v", tt.name, gitSays, tt.want)
		}
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
