package transfer

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// ignoreRule is one pattern line of an ignore file (.gitignore, .skyignore
// or .git/info/exclude), with git's semantics (gitignore(5)):
//
//   - blank lines and lines starting with "#" are skipped; "\#" and "\!"
//     are literal; unescaped trailing spaces are dropped;
//   - "!" negates: a later negated match re-includes the path (but nothing
//     below an excluded directory can be re-included, since the walk never
//     enters it);
//   - a trailing "/" matches directories only;
//   - a pattern with a "/" at its start or middle is anchored to the
//     directory of its file; otherwise it matches a name at any depth below;
//   - "*" and "?" never match "/", "[...]" is a class ("[!...]" negated),
//     "**/" matches any number of leading directories, "/**/" zero or more
//     directories, a trailing "/**" everything inside.
type ignoreRule struct {
	base     string // directory of the ignore file, "/"-separated, "" = root
	pattern  string // the line as written, for error messages and tests
	re       *regexp.Regexp
	negate   bool
	dirOnly  bool
	anchored bool // matched against the path below base, else the base name
}

// ignoreRules is an ordered rule list: later rules take precedence, so the
// list holds .git/info/exclude first, then .gitignore files from the root
// down to the directory being walked.
type ignoreRules []ignoreRule

// parseIgnore reads the lines of an ignore file found in directory base
// (relative to the packed root, "/"-separated, "" for the root).
func parseIgnore(base, data string) (ignoreRules, error) {
	var rules ignoreRules
	for i, line := range strings.Split(data, "\n") {
		r, ok, err := parseIgnoreLine(base, line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if ok {
			rules = append(rules, r)
		}
	}
	return rules, nil
}

func parseIgnoreLine(base, line string) (ignoreRule, bool, error) {
	line = strings.TrimSuffix(line, "\r")
	if line == "" || strings.HasPrefix(line, "#") {
		return ignoreRule{}, false, nil
	}
	// Drop trailing spaces unless the last one is escaped with "\".
	for strings.HasSuffix(line, " ") && !strings.HasSuffix(line, `\ `) {
		line = line[:len(line)-1]
	}
	r := ignoreRule{base: base, pattern: line}
	p := line
	if strings.HasPrefix(p, "!") {
		r.negate = true
		p = p[1:]
	}
	if strings.HasSuffix(p, "/") {
		r.dirOnly = true
		p = strings.TrimRight(p, "/")
	}
	if strings.Contains(p, "/") {
		r.anchored = true
		p = strings.TrimPrefix(p, "/")
	}
	if p == "" {
		return ignoreRule{}, false, nil
	}
	re, err := globRegexp(p)
	if err != nil {
		return ignoreRule{}, false, fmt.Errorf("pattern %q: %w", line, err)
	}
	r.re = re
	return r, true, nil
}

// match reports whether the rule matches rel ("/"-separated, relative to
// the packed root).
func (r *ignoreRule) match(rel string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	sub := rel
	if r.base != "" {
		if !strings.HasPrefix(rel, r.base+"/") {
			return false
		}
		sub = rel[len(r.base)+1:]
	}
	if !r.anchored {
		sub = path.Base(sub)
	}
	return r.re.MatchString(sub)
}

// ignored reports whether rel is excluded: the last matching rule decides.
func (rs ignoreRules) ignored(rel string, isDir bool) bool {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].match(rel, isDir) {
			return !rs[i].negate
		}
	}
	return false
}

// globRegexp turns a gitignore glob into an anchored regular expression.
func globRegexp(p string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '\\':
			if i+1 < len(p) {
				i++
				b.WriteString(regexp.QuoteMeta(p[i : i+1]))
			} else {
				b.WriteString(`\\`)
			}
		case '*':
			j := i
			for j < len(p) && p[j] == '*' {
				j++
			}
			stars := j - i
			atStart := i == 0 || p[i-1] == '/'
			switch {
			case stars >= 2 && atStart && j < len(p) && p[j] == '/':
				// "**/" at the start or "/**/" in the middle: any number of
				// directories, including none.
				b.WriteString(`(?:.*/)?`)
				j++ // the "/" is part of the match above
			case stars >= 2 && atStart && j == len(p):
				// "/**" at the end (or a lone "**"): everything.
				b.WriteString(`.*`)
			default:
				b.WriteString(`[^/]*`)
			}
			i = j - 1
		case '?':
			b.WriteString(`[^/]`)
		case '[':
			cls, n, ok := globClass(p[i:])
			if !ok {
				b.WriteString(`\[`)
				continue
			}
			b.WriteString(cls)
			i += n - 1
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// globClass translates the bracket expression at the start of p. It
// returns the regexp class, the number of bytes of p it used, and false
// when the bracket is not closed (then "[" is literal, as in git).
func globClass(p string) (string, int, bool) {
	var b strings.Builder
	b.WriteString("[")
	i := 1
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		b.WriteString("^/") // a negated class still never matches "/"
		i++
	}
	first := true
	for i < len(p) {
		c := p[i]
		switch {
		case c == ']' && !first:
			b.WriteString("]")
			return b.String(), i + 1, true
		case c == '[' && i+1 < len(p) && p[i+1] == ':':
			end := strings.Index(p[i+2:], ":]")
			if end < 0 {
				return "", 0, false
			}
			b.WriteString(p[i : i+2+end+2])
			i += 2 + end + 2
			first = false
			continue
		case c == '\\' && i+1 < len(p):
			i++
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		case c == '\\' || c == '[' || c == ']' || c == '^':
			b.WriteString(`\` + string(c))
		default:
			b.WriteByte(c)
		}
		first = false
		i++
	}
	return "", 0, false
}
