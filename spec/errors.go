package spec

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Error is one problem found in a task file. Every part but Msg may be
// unknown (zero), in which case Error() leaves it out.
type Error struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	// Path names the field, e.g. "resources.any_of[1].accelerators".
	Path string `json:"path,omitempty"`
	Msg  string `json:"msg"`
}

// Error formats the error as FILE:LINE:COLUMN: PATH: MSG.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(":")
		if e.Column > 0 {
			b.WriteString(strconv.Itoa(e.Column))
			b.WriteString(":")
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a file, in file order.
type ErrorList []*Error

// Error joins the errors, one per line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// sort orders the list by position, then path and message, and drops
// exact duplicates (an alias can make one node reported twice).
func (l ErrorList) sorted() ErrorList {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Msg < b.Msg
	})
	out := l[:0]
	for i, e := range l {
		if i > 0 && *e == *l[i-1] {
			continue
		}
		out = append(out, e)
	}
	return out
}

// unknownField is the message for a key that is not allowed in a mapping.
func unknownField(key string, known []string) string {
	msg := fmt.Sprintf("unknown field %q", key)
	if s := suggest(key, known); s != "" {
		return msg + fmt.Sprintf("; did you mean %q?", s)
	}
	return msg + "; allowed: " + strings.Join(visibleKeys(known), ", ")
}

// visibleKeys drops the internal (underscore) keys from a list shown to
// a user.
func visibleKeys(keys []string) []string {
	var out []string
	for _, k := range keys {
		if !strings.HasPrefix(k, "_") {
			out = append(out, k)
		}
	}
	return out
}

// suggest returns the known word nearest to s, or "" when none is near
// enough to be a likely typo.
func suggest(s string, known []string) string {
	best, bestDist := "", -1
	ls := strings.ToLower(s)
	for _, k := range visibleKeys(known) {
		d := EditDistance(ls, strings.ToLower(k))
		if bestDist < 0 || d < bestDist {
			best, bestDist = k, d
		}
	}
	if bestDist < 0 {
		return ""
	}
	limit := 1 + len(s)/4
	if limit > 3 {
		limit = 3
	}
	if bestDist <= limit {
		return best
	}
	return ""
}

// EditDistance is the Levenshtein distance between a and b (bytes; task
// file keys and accelerator names are ASCII), for "did you mean"
// suggestions. Strings over 64 bytes are never near anything.
func EditDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// Long keys are never typos of short field names.
		return len(a) + len(b)
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// quoteList formats allowed values for a message: "a", "b" or "c".
func quoteList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = strconv.Quote(v)
	}
	switch len(q) {
	case 0:
		return ""
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
