package transfer

import (
	"bytes"
	"strings"
)

// ignoreRule is one pattern line of an ignore file (.gitignore, .skyignore
// or .git/info/exclude), with git's semantics (gitignore(5), and git's
// dir.c and wildmatch.c where the manual is silent):
//
//   - lines are split at "\n" (a "\r" before it is dropped); blank lines
//     and lines starting with "#" are skipped; unescaped trailing spaces
//     are dropped; a UTF-8 byte order mark at the start of a file is
//     skipped;
//   - "!" negates: a later negated match re-includes the path (nothing
//     below an excluded directory can be re-included, since the walk never
//     enters it); "\!" and "\#" start a pattern with a literal "!" or "#";
//   - one trailing "/" makes the pattern match directories only;
//   - a pattern with a "/" left at its start or middle is matched against
//     the path below the directory of its file ("anchored"), otherwise
//     against the base name at any depth below that directory;
//   - "*", "?" and "[...]" never match "/"; "**" between slashes (or at
//     either end) matches any number of directories; a bracket that is
//     never closed makes the pattern match nothing.
type ignoreRule struct {
	base     string // "/"-terminated directory of the ignore file, "" = root
	line     string // the pattern as written (after trimming), for tests and errors
	pattern  string // what wildmatch sees: without "!" and the trailing "/"
	prefix   int    // length of pattern's leading part free of glob characters
	negate   bool
	dirOnly  bool
	baseName bool // no "/" in pattern: matched against the last path element
	endsWith bool // "*literal": a suffix compare does the job
}

// ignoreRules is an ordered rule list: later rules take precedence, so the
// list holds .git/info/exclude first, then ignore files from the root down
// to the directory being walked.
type ignoreRules []ignoreRule

// parseIgnore reads the lines of an ignore file found in directory base
// (relative to the walked root, "/"-separated, "" for the root). Git never
// rejects a pattern, and neither does this: a malformed one matches
// nothing. The error result is kept for callers written against the first
// version of this function; it is always nil.
func parseIgnore(base, data string) (ignoreRules, error) {
	data = strings.TrimPrefix(data, "\ufeff")
	if base != "" && !strings.HasSuffix(base, "/") {
		base += "/"
	}
	var rules ignoreRules
	for line := range strings.SplitSeq(data, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		line = trimTrailingSpaces(line)
		if r, ok := newIgnoreRule(base, line); ok {
			rules = append(rules, r)
		}
	}
	return rules, nil
}

// trimTrailingSpaces drops trailing spaces that are not escaped with a
// backslash, as git's trim_trailing_spaces does (tabs are kept).
func trimTrailingSpaces(s string) string {
	lastSpace := -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ':
			if lastSpace < 0 {
				lastSpace = i
			}
		case '\\':
			i++
			if i == len(s) {
				return s
			}
			lastSpace = -1
		default:
			lastSpace = -1
		}
	}
	if lastSpace >= 0 {
		return s[:lastSpace]
	}
	return s
}

func newIgnoreRule(base, line string) (ignoreRule, bool) {
	r := ignoreRule{base: base, line: line}
	p := line
	if strings.HasPrefix(p, "!") {
		r.negate = true
		p = p[1:]
	}
	if strings.HasSuffix(p, "/") {
		r.dirOnly = true
		p = p[:len(p)-1] // one slash only, as git
	}
	if p == "" {
		return ignoreRule{}, false // matches nothing in git either
	}
	r.baseName = !strings.Contains(p, "/")
	r.prefix = simpleLength(p)
	r.endsWith = p[0] == '*' && simpleLength(p[1:]) == len(p)-1
	r.pattern = p
	return r, true
}

// simpleLength is the length of the leading part of p that holds no glob
// character (git's simple_length).
func simpleLength(p string) int {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '*', '?', '[', '\\':
			return i
		}
	}
	return len(p)
}

// match reports whether the rule matches rel ("/"-separated, relative to
// the walked root).
func (r *ignoreRule) match(rel string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	if !strings.HasPrefix(rel, r.base) || len(rel) == len(r.base) {
		return false
	}
	if r.baseName {
		name := rel[strings.LastIndexByte(rel, '/')+1:]
		switch {
		case r.prefix == len(r.pattern):
			return name == r.pattern
		case r.endsWith:
			return strings.HasSuffix(name, r.pattern[1:])
		default:
			return wildmatch(r.pattern, name, false)
		}
	}
	// Anchored: like git's match_pathname, compare the literal prefix
	// first, then wildmatch the rest with "/" significant.
	pat, prefix := r.pattern, r.prefix
	if pat[0] == '/' {
		pat, prefix = pat[1:], prefix-1
	}
	name := rel[len(r.base):]
	if prefix > 0 {
		if prefix > len(name) || name[:prefix] != pat[:prefix] {
			return false
		}
		pat, name = pat[prefix:], name[prefix:]
		if pat == "" {
			return name == ""
		}
	}
	return wildmatch(pat, name, true)
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

// wildmatch reports whether text matches the glob pattern, following git's
// wildmatch.c; with pathname set, wildcards never match "/" except "**"
// standing between slashes.
func wildmatch(pattern, text string, pathname bool) bool {
	return doWild([]byte(pattern), []byte(text), pathname) == wmMatch
}

const (
	wmMatch = iota
	wmNoMatch
	wmAbortAll
	wmAbortToStarStar
)

func doWild(p, text []byte, pathname bool) int {
	pi, ti := 0, 0
	for ; pi < len(p); pi, ti = pi+1, ti+1 {
		pc := p[pi]
		var tc byte
		if ti < len(text) {
			tc = text[ti]
		} else if pc != '*' {
			return wmAbortAll
		}
		switch pc {
		case '\\':
			// The next pattern byte is literal; a trailing backslash
			// matches nothing.
			pi++
			if pi == len(p) || tc != p[pi] {
				return wmNoMatch
			}
		default:
			if tc != pc {
				return wmNoMatch
			}
		case '?':
			if pathname && tc == '/' {
				return wmNoMatch
			}
		case '*':
			var matchSlash bool
			pi++
			if pi < len(p) && p[pi] == '*' {
				prev := pi - 2
				for pi < len(p) && p[pi] == '*' {
					pi++
				}
				if (prev < 0 || p[prev] == '/') &&
					(pi == len(p) || p[pi] == '/' || (p[pi] == '\\' && pi+1 < len(p) && p[pi+1] == '/')) {
					// "**/" may also match no directory at all.
					if pi < len(p) && p[pi] == '/' && doWild(p[pi+1:], text[ti:], pathname) == wmMatch {
						return wmMatch
					}
					matchSlash = true
				} else {
					matchSlash = !pathname
				}
			} else {
				matchSlash = !pathname
			}
			if pi == len(p) {
				// A trailing "**" matches everything, a trailing "*" only
				// what holds no more slashes.
				if !matchSlash && bytes.IndexByte(text[ti:], '/') >= 0 {
					return wmNoMatch
				}
				return wmMatch
			}
			if !matchSlash && p[pi] == '/' {
				// One star followed by a slash matches up to the next slash.
				slash := bytes.IndexByte(text[ti:], '/')
				if slash < 0 {
					return wmNoMatch
				}
				ti += slash
				// The slash itself is consumed by the loop.
				continue
			}
			for {
				if ti == len(text) {
					break
				}
				tc = text[ti]
				if !isGlobSpecial(p[pi]) {
					// Skip ahead to the next occurrence of the literal.
					want := p[pi]
					for ti < len(text) && (matchSlash || text[ti] != '/') && text[ti] != want {
						ti++
					}
					if ti == len(text) || text[ti] != want {
						return wmNoMatch
					}
					tc = text[ti]
				}
				if m := doWild(p[pi:], text[ti:], pathname); m != wmNoMatch {
					if !matchSlash || m != wmAbortToStarStar {
						return m
					}
				} else if !matchSlash && tc == '/' {
					return wmAbortToStarStar
				}
				ti++
			}
			return wmAbortAll
		case '[':
			m, next, ok := matchClass(p, pi, tc)
			if !ok {
				return wmAbortAll
			}
			if !m || (pathname && tc == '/') {
				return wmNoMatch
			}
			pi = next
		}
	}
	if ti < len(text) {
		return wmNoMatch
	}
	return wmMatch
}

func isGlobSpecial(c byte) bool {
	return c == '*' || c == '?' || c == '[' || c == '\\'
}

// matchClass matches tc against the bracket expression opening at p[open].
// It returns whether tc is in the (possibly negated) class, the index of
// the closing "]", and false when the expression is malformed (never
// closed, or an unknown [:class:]), which makes the whole pattern fail.
func matchClass(p []byte, open int, tc byte) (bool, int, bool) {
	i := open + 1
	if i >= len(p) {
		return false, 0, false
	}
	negated := false
	if p[i] == '!' || p[i] == '^' {
		negated = true
		i++
	}
	matched := false
	var prev byte
	for first := true; ; first = false {
		if i >= len(p) {
			return false, 0, false
		}
		c := p[i]
		if c == ']' && !first {
			break
		}
		switch {
		case c == '\\':
			i++
			if i >= len(p) {
				return false, 0, false
			}
			c = p[i]
			if tc == c {
				matched = true
			}
		case c == '-' && prev != 0 && i+1 < len(p) && p[i+1] != ']':
			i++
			hi := p[i]
			if hi == '\\' {
				i++
				if i >= len(p) {
					return false, 0, false
				}
				hi = p[i]
			}
			if tc <= hi && tc >= prev {
				matched = true
			}
			c = 0 // a range cannot start another range
		case c == '[' && i+1 < len(p) && p[i+1] == ':':
			s := i + 2
			j := s
			for j < len(p) && p[j] != ']' {
				j++
			}
			if j >= len(p) {
				return false, 0, false
			}
			if j-s-1 < 0 || p[j-1] != ':' {
				// No ":]": the "[" is an ordinary member.
				if tc == '[' {
					matched = true
				}
				c = '['
				break
			}
			in, known := posixClass(string(p[s:j-1]), tc)
			if !known {
				return false, 0, false
			}
			if in {
				matched = true
			}
			i = j
			c = 0
		default:
			if tc == c {
				matched = true
			}
		}
		prev = c
		i++
	}
	return matched != negated, i, true
}

// posixClass reports whether c is in the named [:class:], and whether the
// class is known.
func posixClass(name string, c byte) (bool, bool) {
	isUpper := c >= 'A' && c <= 'Z'
	isLower := c >= 'a' && c <= 'z'
	isDigit := c >= '0' && c <= '9'
	isPrint := c >= 0x20 && c < 0x7f
	switch name {
	case "alnum":
		return isUpper || isLower || isDigit, true
	case "alpha":
		return isUpper || isLower, true
	case "blank":
		return c == ' ' || c == '\t', true
	case "cntrl":
		return c < 0x20 || c == 0x7f, true
	case "digit":
		return isDigit, true
	case "graph":
		return isPrint && c != ' ', true
	case "lower":
		return isLower, true
	case "print":
		return isPrint, true
	case "punct":
		return isPrint && c != ' ' && !isUpper && !isLower && !isDigit, true
	case "space":
		return c == ' ' || (c >= '\t' && c <= '\r'), true
	case "upper":
		return isUpper, true
	case "xdigit":
		return isDigit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'), true
	}
	return false, false
}
