package transfer

import (
	"testing"
)

func TestIgnoreRules(t *testing.T) {
	t.Parallel()
	type file struct{ base, data string }
	tests := []struct {
		name  string
		files []file // in precedence order, lowest first
		path  string
		dir   bool
		want  bool
	}{
		{"plain name at root", []file{{"", "foo"}}, "foo", false, true},
		{"plain name at depth", []file{{"", "foo"}}, "a/b/foo", false, true},
		{"plain name is not a prefix", []file{{"", "foo"}}, "foobar", false, false},
		{"comment", []file{{"", "#foo"}}, "#foo", false, false},
		{"escaped hash", []file{{"", `\#foo`}}, "#foo", false, true},
		{"blank lines", []file{{"", "\n\n"}}, "x", false, false},
		{"trailing spaces dropped", []file{{"", "foo   "}}, "foo", false, true},
		{"escaped trailing space kept", []file{{"", `foo\ `}}, "foo ", false, true},
		{"crlf", []file{{"", "foo\r\nbar\r\n"}}, "bar", false, true},
		{"star", []file{{"", "*.log"}}, "x/debug.log", false, true},
		{"star does not cross slash", []file{{"", "a/*.log"}}, "a/b/x.log", false, false},
		{"star within dir", []file{{"", "a/*.log"}}, "a/x.log", false, true},
		{"question mark", []file{{"", "?.txt"}}, "a.txt", false, true},
		{"question mark one char", []file{{"", "?.txt"}}, "ab.txt", false, false},
		{"class", []file{{"", "[ab].txt"}}, "b.txt", false, true},
		{"class miss", []file{{"", "[ab].txt"}}, "c.txt", false, false},
		{"negated class", []file{{"", "[!ab].txt"}}, "c.txt", false, true},
		{"range", []file{{"", "file[0-9]"}}, "file7", false, true},
		{"posix class", []file{{"", "[[:digit:]]x"}}, "3x", false, true},
		{"unclosed bracket is literal", []file{{"", "a[b"}}, "a[b", false, true},
		{"leading slash anchors", []file{{"", "/foo"}}, "a/foo", false, false},
		{"leading slash at root", []file{{"", "/foo"}}, "foo", false, true},
		{"middle slash anchors", []file{{"", "a/foo"}}, "x/a/foo", false, false},
		{"middle slash at root", []file{{"", "a/foo"}}, "a/foo", false, true},
		{"dir only matches dir", []file{{"", "build/"}}, "x/build", true, true},
		{"dir only skips file", []file{{"", "build/"}}, "x/build", false, false},
		{"anchored dir only", []file{{"", "/build/"}}, "build", true, true},
		{"leading double star", []file{{"", "**/foo"}}, "a/b/foo", false, true},
		{"leading double star at root", []file{{"", "**/foo"}}, "foo", false, true},
		{"leading double star with dir", []file{{"", "**/foo/bar"}}, "x/foo/bar", false, true},
		{"trailing double star inside", []file{{"", "abc/**"}}, "abc/x/y", false, true},
		{"trailing double star not dir itself", []file{{"", "abc/**"}}, "abc", true, false},
		{"middle double star zero dirs", []file{{"", "a/**/b"}}, "a/b", false, true},
		{"middle double star many dirs", []file{{"", "a/**/b"}}, "a/x/y/b", false, true},
		{"other double star is a star", []file{{"", "a**b"}}, "axxb", false, true},
		{"other double star no slash", []file{{"", "a/x**y"}}, "a/x/y", false, false},
		{"negation re-includes", []file{{"", "*.log\n!keep.log"}}, "keep.log", false, false},
		{"negation order matters", []file{{"", "!keep.log\n*.log"}}, "keep.log", false, true},
		{"escaped bang", []file{{"", `\!x`}}, "!x", false, true},
		{"nested file applies below it", []file{{"sub", "*.tmp"}}, "sub/a/x.tmp", false, true},
		{"nested file not outside", []file{{"sub", "*.tmp"}}, "other/x.tmp", false, false},
		{"nested anchored is relative to its dir", []file{{"sub", "/gen"}}, "sub/gen", true, true},
		{"nested anchored not deeper", []file{{"sub", "/gen"}}, "sub/x/gen", true, false},
		{"nested overrides parent", []file{{"", "*.dat"}, {"sub", "!important.dat"}}, "sub/important.dat", false, false},
		{"parent still applies elsewhere", []file{{"", "*.dat"}, {"sub", "!important.dat"}}, "important.dat", false, true},
		{"info exclude lowest", []file{{"", "secret"}, {"", "!secret"}}, "secret", false, false},
		{"dot files", []file{{"", ".env"}}, "a/.env", false, true},
		{"escaped star literal", []file{{"", `\*`}}, "*", false, true},
		{"escaped star not wildcard", []file{{"", `\*`}}, "x", false, false},
		{"regexp chars literal", []file{{"", "a+b(c).txt"}}, "a+b(c).txt", false, true},
	}
	for _, tt := range tests {
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
