package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestShellQuote(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"":                 "''",
		"plain":            "plain",
		"a-b_c.d/e:f,g@h%": "a-b_c.d/e:f,g@h%",
		"with space":       "'with space'",
		"it's":             `'it'"'"'s'`,
		"$HOME":            "'$HOME'",
		"line1\nline2":     "'line1\nline2'",
		"é":                "'é'",
	}
	for in, want := range tests {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTaskScript(t *testing.T) {
	t.Parallel()
	got, err := taskScript("python train.py", map[string]string{"B": "two words", "A": "1"})
	if err != nil {
		t.Fatal(err)
	}
	want := `#!/bin/bash
if [ -f ~/.bashrc ]; then source ~/.bashrc; fi
set -a
if command -v conda > /dev/null 2>&1; then __sky_conda="$(conda info --base 2> /dev/null)"; else __sky_conda=; fi
. "$__sky_conda/etc/profile.d/conda.sh" > /dev/null 2>&1 || true
unset __sky_conda
set +a
export PYTHONUNBUFFERED=1
cd ~/sky_workdir
export A=1
export B='two words'
python train.py
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("script (-want +got):\n%s", diff)
	}
	if _, err := taskScript("", map[string]string{"BAD-NAME": "x"}); err == nil {
		t.Errorf("taskScript accepted an invalid variable name")
	}
}

// TestTaskScriptSourcesConda runs the script with bash: with a conda on
// PATH its base's conda.sh is sourced (its variables exported, as set -a
// makes them), without one nothing is, and the user's commands run.
func TestTaskScriptSourcesConda(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash on this machine:", err)
	}
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, "sky_workdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(t.TempDir(), "conda base")
	bin := filepath.Join(t.TempDir(), "bin")
	for _, d := range []string{filepath.Join(base, "etc", "profile.d"), bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "etc", "profile.d", "conda.sh"), []byte("CONDA_LOADED=yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conda := "#!/bin/sh\n[ \"$1 $2\" = \"info --base\" ] && echo '" + base + "'\n"
	if err := os.WriteFile(filepath.Join(bin, "conda"), []byte(conda), 0o755); err != nil {
		t.Fatal(err)
	}
	script, err := taskScript(`echo "loaded=${CONDA_LOADED:-no} exported=$(sh -c 'echo ${CONDA_LOADED:-no}') helper=${__sky_conda-unset}"`, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, want string
	}{
		{bin + ":/usr/bin:/bin", "loaded=yes exported=yes helper=unset"},
		{"/usr/bin:/bin", "loaded=no exported=no helper=unset"},
	} {
		cmd := exec.Command(bash, "-c", script)
		cmd.Env = []string{"HOME=" + home, "PATH=" + c.path}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("PATH=%s: %v\n%s", c.path, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("PATH=%s: the script said %q, want %q", c.path, got, c.want)
		}
	}
}

func TestResolveDest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		dest string
		file bool
		want string // "" = error
	}{
		{"~/sky_workdir", false, "/h/sky_workdir"},
		{"~/data/x", false, "/h/data/x"},
		{"data/x", false, "/h/sky_workdir/data/x"},
		{"./a/../b", true, "/h/sky_workdir/b"},
		{"/mnt/data", false, "/mnt/data"},
		{"/mnt/data/../x", false, "/mnt/x"},
		{"~", false, ""},
		{"~/", false, ""},
		{"/", false, ""},
		{"~bob/x", false, ""},
		{"", false, ""},
	}
	for _, tt := range tests {
		got, err := resolveDest("/h", tt.dest, tt.file)
		if tt.want == "" {
			if err == nil {
				t.Errorf("resolveDest(%q) = %q, want an error", tt.dest, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("resolveDest(%q) = %q, %v; want %q", tt.dest, got, err, tt.want)
		}
	}
}

func TestCRLFStripper(t *testing.T) {
	t.Parallel()
	tests := []struct {
		chunks []string
		want   string
	}{
		{[]string{"a\r\nb\r\n"}, "a\nb\n"},
		{[]string{"a\r", "\nb"}, "a\nb"},
		{[]string{"a\r", "b"}, "a\rb"},
		{[]string{"50%\r100%\r\n"}, "50%\r100%\n"},
		{[]string{"a\r\r\n"}, "a\n"},
		{[]string{"end\r"}, "end\r"},
		{[]string{"", "x\r", "", "\n"}, "x\n"},
	}
	for _, tt := range tests {
		var s crlfStripper
		var got []byte
		for _, c := range tt.chunks {
			got = append(got, s.strip([]byte(c))...)
		}
		got = append(got, s.flush()...)
		if string(got) != tt.want {
			t.Errorf("strip %q = %q, want %q", tt.chunks, got, tt.want)
		}
	}
}

func TestTailOffset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		content string
		n       int
		want    string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\nc\n", 5, "a\nb\nc\n"},
		{"a\nb\nc\n", 1, "c\n"},
		{"", 3, ""},
		{"\n\n\n", 1, "\n"},
		{strings.Repeat("x", 70000) + "\nlast\n", 1, "last\n"},
		{"first\n" + strings.Repeat("y", 70000) + "\n", 1, strings.Repeat("y", 70000) + "\n"},
	}
	for i, tt := range tests {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		off, err := tailOffset(f, tt.n)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := tt.content[off:]; got != tt.want {
			t.Errorf("case %d: tail %d = %.40q, want %.40q", i, tt.n, got, tt.want)
		}
	}
}

func TestFailedMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		codes []int
		want  string
	}{
		{[]int{1}, "Job 3 failed with return code list: [1]"},
		{[]int{139, 0}, "Job 3 failed with return code list: [139, 0] (likely due to Segmentation Fault)"},
		{[]int{137, 2}, "Job 3 failed with return code list: [137, 2] (A Worker failed with return code 2, sky-coord cleaned up the processes on other nodes with return code 137)"},
		{[]int{137}, "Job 3 failed with return code list: [137] (A Worker failed with return code 137, sky-coord cleaned up the processes on other nodes with return code 137)"},
	}
	for _, tt := range tests {
		if got := failedMessage(3, tt.codes); got != tt.want {
			t.Errorf("failedMessage(%v) = %q, want %q", tt.codes, got, tt.want)
		}
	}
}
