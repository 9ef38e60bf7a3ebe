package spec

import (
	"fmt"
	"regexp"
	"strings"
)

// ParseDotenv parses an --env-file / --secret-file as python-dotenv does
// (SkyPilot uses dotenv_values): KEY=VALUE lines, `export ` prefixes, #
// comments, 'single-quoted' literals, "double-quoted" values with
// backslash escapes (both may span lines), and ${VAR} / ${VAR:-default}
// expanded from the lines above. A KEY without = is an error (SkyPilot
// would pass it on as null).
func ParseDotenv(filename string, data []byte) (map[string]string, error) {
	return ParseDotenvLookup(filename, data, nil)
}

// ParseDotenvLookup is ParseDotenv where ${VAR} not defined in the file is
// looked up with lookup (os.LookupEnv in the CLI, as python-dotenv does).
func ParseDotenvLookup(filename string, data []byte, lookup func(string) (string, bool)) (map[string]string, error) {
	p := &dotenvParser{file: filename, s: string(data), line: 1, vals: map[string]string{}, lookup: lookup}
	p.parse()
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return p.vals, nil
}

type dotenvParser struct {
	file   string
	s      string
	pos    int
	line   int
	vals   map[string]string
	lookup func(string) (string, bool)
	errs   ErrorList
}

func (p *dotenvParser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *dotenvParser) parse() {
	for p.pos < len(p.s) {
		start := p.line
		rest := p.restOfLine()
		trimmed := strings.TrimSpace(rest)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			p.advanceLine()
			continue
		}
		p.skipSpaces()
		if strings.HasPrefix(p.s[p.pos:], "export ") {
			p.pos += len("export ")
			p.skipSpaces()
		}
		key := p.key()
		p.skipSpaces()
		if p.pos >= len(p.s) || p.s[p.pos] != '=' {
			if key == "" {
				p.errorf(start, "cannot parse %q; write KEY=VALUE", strings.TrimSpace(p.restOfLine()))
			} else {
				p.errorf(start, "%s has no value; write %s=VALUE (or %s= for an empty value)", key, key, key)
			}
			p.advanceLine()
			continue
		}
		p.pos++ // '='
		p.skipSpaces()
		value, ok := p.value(start)
		if !ok {
			return
		}
		if !reEnvName.MatchString(key) {
			p.errorf(start, "%q is not a valid variable name (letters, digits and _, not starting with a digit)", key)
		} else {
			p.vals[key] = value
		}
		p.advanceLine()
	}
}

func (p *dotenvParser) restOfLine() string {
	end := strings.IndexByte(p.s[p.pos:], '\n')
	if end < 0 {
		return p.s[p.pos:]
	}
	return p.s[p.pos : p.pos+end]
}

// advanceLine moves past the end of the current line.
func (p *dotenvParser) advanceLine() {
	end := strings.IndexByte(p.s[p.pos:], '\n')
	if end < 0 {
		p.pos = len(p.s)
		return
	}
	p.pos += end + 1
	p.line++
}

func (p *dotenvParser) skipSpaces() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

func (p *dotenvParser) key() string {
	if p.pos < len(p.s) && p.s[p.pos] == '\'' {
		end := strings.IndexByte(p.s[p.pos+1:], '\'')
		if end >= 0 {
			k := p.s[p.pos+1 : p.pos+1+end]
			p.pos += end + 2
			return k
		}
	}
	start := p.pos
	for p.pos < len(p.s) && !strings.ContainsRune("=#\n\r \t", rune(p.s[p.pos])) {
		p.pos++
	}
	return p.s[start:p.pos]
}

var reDotenvComment = regexp.MustCompile(`\s+#.*`)

// value reads a value and leaves pos at the end of its line.
func (p *dotenvParser) value(line int) (string, bool) {
	if p.pos < len(p.s) && (p.s[p.pos] == '\'' || p.s[p.pos] == '"') {
		q := p.s[p.pos]
		var b strings.Builder
		i := p.pos + 1
		for ; i < len(p.s); i++ {
			c := p.s[i]
			if c == '\\' && i+1 < len(p.s) && (p.s[i+1] == q || p.s[i+1] == '\\' || q == '"') {
				b.WriteString(unescape(q, p.s[i+1]))
				i++
				continue
			}
			if c == q {
				break
			}
			if c == '\n' {
				p.line++
			}
			b.WriteByte(c)
		}
		if i >= len(p.s) {
			p.errorf(line, "the quoted value has no closing %c", q)
			return "", false
		}
		p.pos = i + 1
		v := b.String()
		if q == '"' {
			v = p.expand(v)
		}
		if tail := strings.TrimSpace(p.restOfLine()); tail != "" && !strings.HasPrefix(tail, "#") {
			p.errorf(p.line, "unexpected %q after the closing quote", tail)
		}
		return v, true
	}
	v := p.restOfLine()
	p.pos += len(v)
	v = strings.TrimRight(reDotenvComment.ReplaceAllString(strings.TrimRight(v, "\r"), ""), " \t")
	return p.expand(v), true
}

func unescape(q, c byte) string {
	if q == '\'' {
		return string(c)
	}
	switch c {
	case 'n':
		return "\n"
	case 't':
		return "\t"
	case 'r':
		return "\r"
	case 'a':
		return "\a"
	case 'b':
		return "\b"
	case 'f':
		return "\f"
	case 'v':
		return "\v"
	case '"', '\\', '\'':
		return string(c)
	}
	return "\\" + string(c)
}

var reDotenvVar = regexp.MustCompile(`\$\{([^}:]*)(?::-([^}]*))?\}`)

// expand replaces ${VAR} and ${VAR:-default} (python-dotenv's POSIX
// subset): earlier lines first, then lookup, else the default or "".
func (p *dotenvParser) expand(v string) string {
	if !strings.Contains(v, "${") {
		return v
	}
	return reDotenvVar.ReplaceAllStringFunc(v, func(m string) string {
		sm := reDotenvVar.FindStringSubmatch(m)
		if val, ok := p.vals[sm[1]]; ok {
			return val
		}
		if p.lookup != nil {
			if val, ok := p.lookup(sm[1]); ok {
				return val
			}
		}
		return sm[2]
	})
}
