package spec

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxNodes bounds the nodes one file may expand to through aliases, so a
// "billion laughs" file is an error, not a hang.
const maxNodes = 200000

// maxDepth bounds nesting (and alias cycles).
const maxDepth = 200

// decoder walks yaml.v3 nodes and collects every error with its position.
type decoder struct {
	file   string
	errs   ErrorList
	budget int
	// exhausted is set once the budget is spent; further errors are
	// suppressed to keep the report readable.
	exhausted bool
	// vars, when set, are substituted for $VAR/${VAR} in every string read
	// (file_mounts, service, workdir and volumes are read this way).
	vars map[string]string
	// unset are the envs and secrets still null (Options.AllowUnset): a
	// value that refers to one is not checked, since it is not known yet.
	unset map[string]bool
	// defaultStore is the store a storage without `store` will use, when
	// the task's cloud decides it ("" when unknown).
	defaultStore string
	// primary are the header's primary_tasks, checked once the tasks are
	// known.
	primary []pair
	// allowUnset mirrors Options.AllowUnset.
	allowUnset bool
	// warnings are findings that do not make the file invalid.
	warnings ErrorList
}

// warnf records a warning at n.
func (d *decoder) warnf(n *yaml.Node, path, format string, args ...any) {
	e := &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.warnings = append(d.warnings, e)
}

// refersToUnset reports whether s refers to an unset env or secret.
func (d *decoder) refersToUnset(s string) bool {
	if len(d.unset) == 0 || !strings.Contains(s, "$") {
		return false
	}
	for _, m := range reVar.FindAllStringSubmatch(s, -1) {
		if d.unset[m[1]] {
			return true
		}
	}
	return false
}

// refersToUndefined reports whether s refers to a $VAR that is neither
// an env nor a secret (so --env may still set it). A reference to a
// defined one is left only when it came in with a substituted value
// (substitution is one pass): it is literal text.
func (d *decoder) refersToUndefined(s string) bool {
	for _, m := range reVar.FindAllStringSubmatch(s, -1) {
		if _, ok := d.vars[m[1]]; !ok || d.unset[m[1]] {
			return true
		}
	}
	return false
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, budget: maxNodes}
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	if d.exhausted {
		return // the report already says the file is too large
	}
	e := &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// deref follows aliases and document nodes, and charges the node budget.
func (d *decoder) deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && i < maxDepth; i++ {
		switch n.Kind {
		case yaml.AliasNode:
			n = n.Alias
			continue
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
			continue
		}
		break
	}
	if n != nil && (n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode) {
		return nil
	}
	if d.exhausted {
		return nil
	}
	d.budget--
	if d.budget < 0 {
		d.errorf(n, "", "the file expands to more than %d YAML nodes (through aliases); simplify it", maxNodes)
		d.exhausted = true
		return nil
	}
	return n
}

// kindOf resolves a node's kind; s is set for scalars.
func (d *decoder) kindOf(n *yaml.Node) (kind, scalar) {
	n = d.deref(n)
	if n == nil {
		return kNull, scalar{kind: kNull, str: "None"}
	}
	switch n.Kind {
	case yaml.MappingNode:
		return kMap, scalar{}
	case yaml.SequenceNode:
		return kSeq, scalar{}
	case yaml.ScalarNode:
		s, ok := resolveScalar(n)
		if !ok {
			return kOther, scalar{}
		}
		if s.kind == kStr && d.vars != nil {
			var ok bool
			if s.str, ok = substitute(s.str, d.vars); !ok {
				d.errorf(n, "", "substituting $VARs makes this value longer than %d bytes", maxSubstituted)
			}
		}
		return s.kind, s
	}
	return kOther, scalar{}
}

func (d *decoder) isNull(n *yaml.Node) bool {
	k, _ := d.kindOf(n)
	return k == kNull
}

// describe names a value for a message: `"abc"`, `12`, `a mapping`.
func (d *decoder) describe(n *yaml.Node) string {
	k, s := d.kindOf(n)
	switch k {
	case kStr, kTime:
		return strconv.Quote(truncate(s.str, 60))
	case kInt, kFloat:
		return s.str
	case kBool:
		return s.str + " (a boolean)"
	case kNull:
		return "null"
	case kOther:
		if dn := d.deref(n); dn != nil && dn.Tag != "" {
			return "a value tagged " + dn.Tag
		}
	}
	return kindName(k)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (d *decoder) typeErr(n *yaml.Node, path, want string) {
	k, _ := d.kindOf(n)
	hint := ""
	if want == "a string" && (k == kInt || k == kFloat || k == kBool || k == kTime) {
		hint = " (put it in quotes to make it a string)"
	}
	d.errorf(n, path, "must be %s, got %s%s", want, d.describe(n), hint)
}

// str requires a string.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	k, s := d.kindOf(n)
	if k != kStr {
		d.typeErr(n, path, "a string")
		return "", false
	}
	return s.str, true
}

// strOrNull accepts a string or null ("" then, with isNull true).
func (d *decoder) strOrNull(n *yaml.Node, path string) (v string, isNull, ok bool) {
	k, s := d.kindOf(n)
	switch k {
	case kNull:
		return "", true, true
	case kStr:
		return s.str, false, true
	}
	d.typeErr(n, path, "a string or null")
	return "", false, false
}

// pyStr is str(value) of a scalar, as SkyPilot coerces env values.
func (d *decoder) pyStr(n *yaml.Node, path, want string) (string, bool) {
	k, s := d.kindOf(n)
	switch k {
	case kStr, kInt, kFloat, kBool, kTime:
		return s.str, true
	}
	d.typeErr(n, path, want)
	return "", false
}

// integer requires an integer (a boolean is not one).
func (d *decoder) integer(n *yaml.Node, path string) (int, bool) {
	k, s := d.kindOf(n)
	if k != kInt {
		d.typeErr(n, path, "an integer")
		return 0, false
	}
	if !s.i.IsInt64() || s.i.Int64() > math.MaxInt32 || s.i.Int64() < math.MinInt32 {
		d.errorf(d.deref(n), path, "%s is out of range", s.str)
		return 0, false
	}
	return int(s.i.Int64()), true
}

// number requires an integer or a float.
func (d *decoder) number(n *yaml.Node, path string) (float64, bool) {
	k, s := d.kindOf(n)
	switch k {
	case kInt:
		f, _ := new(big.Float).SetInt(s.i).Float64()
		return f, true
	case kFloat:
		if math.IsNaN(s.f) {
			d.errorf(d.deref(n), path, "must be a number, got nan")
			return 0, false
		}
		return s.f, true
	}
	d.typeErr(n, path, "a number")
	return 0, false
}

// boolean requires true/false (YAML 1.1 also reads yes/no/on/off).
func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	k, s := d.kindOf(n)
	if k != kBool {
		d.typeErr(n, path, "true or false")
		return false, false
	}
	return s.b, true
}

// seq requires a list.
func (d *decoder) seq(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	dn := d.deref(n)
	if dn == nil || dn.Kind != yaml.SequenceNode {
		d.typeErr(n, path, "a list")
		return nil, false
	}
	return dn.Content, true
}

// pair is one key: value of a mapping.
type pair struct {
	key  string // str() of the resolved key
	k, v *yaml.Node
}

// mapping requires a mapping and returns its pairs in order, with merge
// keys (<<) applied and a later duplicate key replacing an earlier one,
// as PyYAML does.
func (d *decoder) mapping(n *yaml.Node, path string) ([]pair, bool) {
	dn := d.deref(n)
	if dn == nil || dn.Kind != yaml.MappingNode {
		d.typeErr(n, path, "a mapping")
		return nil, false
	}
	return d.pairs(dn, path, 0), true
}

func (d *decoder) pairs(n *yaml.Node, path string, depth int) []pair {
	var explicit, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		dk := d.deref(k)
		if dk != nil && dk.Kind == yaml.ScalarNode && dk.Value == "<<" && dk.Style&(yaml.TaggedStyle|yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
			merged = append(merged, d.mergeValue(v, path, depth)...)
			continue
		}
		kk, ks := d.kindOf(k)
		key := ks.str
		if kk == kMap || kk == kSeq || kk == kOther {
			d.errorf(dk, path, "a key must be a plain value, not %s", kindName(kk))
			continue
		}
		explicit = append(explicit, pair{key: key, k: k, v: v})
	}
	// Merged keys come first and lose to explicit ones.
	all := append(merged, explicit...)
	index := map[string]int{}
	var out []pair
	for _, p := range all {
		if i, dup := index[p.key]; dup {
			out[i] = p
			continue
		}
		index[p.key] = len(out)
		out = append(out, p)
	}
	return out
}

func (d *decoder) mergeValue(v *yaml.Node, path string, depth int) []pair {
	if depth > maxDepth {
		d.errorf(v, path, "merge keys (<<) nest too deeply")
		return nil
	}
	dv := d.deref(v)
	if dv == nil {
		return nil
	}
	switch dv.Kind {
	case yaml.MappingNode:
		return d.pairs(dv, path, depth+1)
	case yaml.SequenceNode:
		var out []pair
		// Earlier mappings in the list win over later ones.
		for i := len(dv.Content) - 1; i >= 0; i-- {
			m := d.deref(dv.Content[i])
			if m == nil || m.Kind != yaml.MappingNode {
				d.errorf(dv.Content[i], path, "a merge key (<<) takes a mapping or a list of mappings")
				continue
			}
			out = append(out, d.pairs(m, path, depth+1)...)
		}
		return out
	}
	d.errorf(dv, path, "a merge key (<<) takes a mapping or a list of mappings")
	return nil
}

// object is a mapping whose keys are checked against the known fields.
type object struct {
	d     *decoder
	path  string
	node  *yaml.Node
	pairs []pair
	byKey map[string]pair
}

// object requires a mapping with only known keys; each unknown key is an
// error that suggests the nearest known one.
func (d *decoder) object(n *yaml.Node, path string, known []string) (*object, bool) {
	ps, ok := d.mapping(n, path)
	if !ok {
		return nil, false
	}
	o := &object{d: d, path: path, node: d.deref(n), pairs: ps, byKey: map[string]pair{}}
	set := map[string]bool{}
	for _, k := range known {
		set[k] = true
	}
	for _, p := range ps {
		if known != nil && !set[p.key] {
			d.errorf(d.deref(p.k), path, "%s", unknownField(p.key, known))
			continue
		}
		o.byKey[p.key] = p
	}
	return o, true
}

// get returns the value of key; ok is false when the key is absent or its
// value is null.
func (o *object) get(key string) (*yaml.Node, bool) {
	p, ok := o.byKey[key]
	if !ok || o.d.isNull(p.v) {
		return nil, false
	}
	return p.v, true
}

// raw returns the value of key even when it is null.
func (o *object) raw(key string) (*yaml.Node, bool) {
	p, ok := o.byKey[key]
	return p.v, ok
}

func (o *object) has(key string) bool {
	_, ok := o.byKey[key]
	return ok
}

// keyNode is the node of key, for errors about the field as a whole.
func (o *object) keyNode(key string) *yaml.Node {
	if p, ok := o.byKey[key]; ok {
		return o.d.deref(p.k)
	}
	return o.node
}

func (o *object) sub(key string) string { return child(o.path, key) }

var reIdent = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// child is the path of a field of path: "resources.cpus", or
// `file_mounts["/data"]` for keys that are not identifiers.
func child(path, key string) string {
	if reIdent.MatchString(key) {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
