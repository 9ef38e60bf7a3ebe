package transfer

import (
	"testing"
)

type ignoreFileData struct{ base, data string }

// ignoreRuleTests is checked against the matcher (TestIgnoreRules) and
// against git itself (TestIgnoreRulesAgainstGitCheckIgnore).
var ignoreRuleTests = []struct {
	name    string
	files   []ignoreFileData // in precedence order, lowest first
	exclude bool             // the first file is .git/info/exclude
	path    string
	dir     bool
	want    bool
}{
	{"plain name at root", []ignoreFileData{{"", "foo"}}, false, "foo", false, true},
	{"plain name at depth", []ignoreFileData{{"", "foo"}}, false, "a/b/foo", false, true},
	{"plain name is not a prefix", []ignoreFileData{{"", "foo"}}, false, "foobar", false, false},
	{"comment", []ignoreFileData{{"", "#foo"}}, false, "#foo", false, false},
	{"escaped hash", []ignoreFileData{{"", `\#foo`}}, false, "#foo", false, true},
	{"blank lines", []ignoreFileData{{"", "\n\n"}}, false, "x", false, false},
	{"trailing spaces dropped", []ignoreFileData{{"", "foo   "}}, false, "foo", false, true},
	{"escaped trailing space kept", []ignoreFileData{{"", `foo\ `}}, false, "foo ", false, true},
	{"crlf", []ignoreFileData{{"", "foo\r\nbar\r\n"}}, false, "bar", false, true},
	{"star", []ignoreFileData{{"", "*.log"}}, false, "x/debug.log", false, true},
	{"star does not cross slash", []ignoreFileData{{"", "a/*.log"}}, false, "a/b/x.log", false, false},
	{"star within dir", []ignoreFileData{{"", "a/*.log"}}, false, "a/x.log", false, true},
	{"question mark", []ignoreFileData{{"", "?.txt"}}, false, "a.txt", false, true},
	{"question mark one char", []ignoreFileData{{"", "?.txt"}}, false, "ab.txt", false, false},
	{"class", []ignoreFileData{{"", "[ab].txt"}}, false, "b.txt", false, true},
	{"class miss", []ignoreFileData{{"", "[ab].txt"}}, false, "c.txt", false, false},
	{"negated class", []ignoreFileData{{"", "[!ab].txt"}}, false, "c.txt", false, true},
	{"range", []ignoreFileData{{"", "file[0-9]"}}, false, "file7", false, true},
	{"posix class", []ignoreFileData{{"", "[[:digit:]]x"}}, false, "3x", false, true},
	{"unclosed bracket matches nothing", []ignoreFileData{{"", "a[b"}}, false, "a[b", false, false},
	{"leading slash anchors", []ignoreFileData{{"", "/foo"}}, false, "a/foo", false, false},
	{"leading slash at root", []ignoreFileData{{"", "/foo"}}, false, "foo", false, true},
	{"middle slash anchors", []ignoreFileData{{"", "a/foo"}}, false, "x/a/foo", false, false},
	{"middle slash at root", []ignoreFileData{{"", "a/foo"}}, false, "a/foo", false, true},
	{"dir only matches dir", []ignoreFileData{{"", "build/"}}, false, "x/build", true, true},
	{"dir only skips file", []ignoreFileData{{"", "build/"}}, false, "x/build", false, false},
	{"anchored dir only", []ignoreFileData{{"", "/build/"}}, false, "build", true, true},
	{"leading double star", []ignoreFileData{{"", "**/foo"}}, false, "a/b/foo", false, true},
	{"leading double star at root", []ignoreFileData{{"", "**/foo"}}, false, "foo", false, true},
	{"leading double star with dir", []ignoreFileData{{"", "**/foo/bar"}}, false, "x/foo/bar", false, true},
	{"trailing double star inside", []ignoreFileData{{"", "abc/**"}}, false, "abc/x/y", false, true},
	{"trailing double star not dir itself", []ignoreFileData{{"", "abc/**"}}, false, "abc", true, false},
	{"middle double star zero dirs", []ignoreFileData{{"", "a/**/b"}}, false, "a/b", false, true},
	{"middle double star many dirs", []ignoreFileData{{"", "a/**/b"}}, false, "a/x/y/b", false, true},
	{"other double star is a star", []ignoreFileData{{"", "a**b"}}, false, "axxb", false, true},
	{"other double star no slash", []ignoreFileData{{"", "a/x**y"}}, false, "a/x/y", false, false},
	{"negation re-includes", []ignoreFileData{{"", "*.log\n!keep.log"}}, false, "keep.log", false, false},
	{"negation order matters", []ignoreFileData{{"", "!keep.log\n*.log"}}, false, "keep.log", false, true},
	{"escaped bang", []ignoreFileData{{"", `\!x`}}, false, "!x", false, true},
	{"nested file applies below it", []ignoreFileData{{"sub", "*.tmp"}}, false, "sub/a/x.tmp", false, true},
	{"nested file not outside", []ignoreFileData{{"sub", "*.tmp"}}, false, "other/x.tmp", false, false},
	{"nested anchored is relative to its dir", []ignoreFileData{{"sub", "/gen"}}, false, "sub/gen", true, true},
	{"nested anchored not deeper", []ignoreFileData{{"sub", "/gen"}}, false, "sub/x/gen", true, false},
	{"nested overrides parent", []ignoreFileData{{"", "*.dat"}, {"sub", "!important.dat"}}, false, "sub/important.dat", false, false},
	{"parent still applies elsewhere", []ignoreFileData{{"", "*.dat"}, {"sub", "!important.dat"}}, false, "important.dat", false, true},
	{"info exclude lowest", []ignoreFileData{{"", "secret"}, {"", "!secret"}}, true, "secret", false, false},
	{"dot files", []ignoreFileData{{"", ".env"}}, false, "a/.env", false, true},
	{"escaped star literal", []ignoreFileData{{"", `\*`}}, false, "*", false, true},
	{"escaped star not wildcard", []ignoreFileData{{"", `\*`}}, false, "x", false, false},
	{"regexp chars literal", []ignoreFileData{{"", "a+b(c).txt"}}, false, "a+b(c).txt", false, true},
}

func TestIgnoreRules(t *testing.T) {
	t.Parallel()
	for _, tt := range ignoreRuleTests {
		t.Run(tt.name, func(t *testing.T) {
			var rules ignoreRules
			for _, f := range tt.files {
				more, err := parseIgnore(f.base, f.data)
				if err != nil {
					t.Fatalf("parseIgnore(%q): %v", f.data, err)
				}
				rules = append(rules, more...)
			}
			if got := rules.ignored(tt.path, tt.dir); got != tt.want {
				t.Errorf("ignored(%q, dir=%v) = %v, want %v; rules %q", tt.path, tt.dir, got, tt.want, tt.files)
			}
		})
	}
}
