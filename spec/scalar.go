package spec

import (
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// SkyPilot reads task files with PyYAML, which implements YAML 1.1: `yes`
// and `on` are booleans, `010` is octal, `1e3` is a string and `1:30` is
// 90. yaml.v3 resolves plain scalars by YAML 1.2 rules, so this file
// resolves them again the way PyYAML does; a value that SkyPilot sees as a
// string must be a string here too.

type kind int

const (
	kNull kind = iota
	kBool
	kInt
	kFloat
	kStr
	kTime
	kMap
	kSeq
	kOther
)

// scalar is a resolved YAML scalar.
type scalar struct {
	kind kind
	str  string // the value as Python's str() prints it
	b    bool
	i    *big.Int
	f    float64
}

var (
	reNull  = regexp.MustCompile(`^(?:~|null|Null|NULL|)$`)
	reBool  = regexp.MustCompile(`^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$`)
	reInt   = regexp.MustCompile(`^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$`)
	reFloat = regexp.MustCompile(`^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$`)
	reTime  = regexp.MustCompile(`^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)$`)
)

// resolveScalar resolves a scalar node as PyYAML's safe loader would. ok
// is false for a tag PyYAML's safe loader cannot construct, or a value
// that does not fit its explicit tag.
func resolveScalar(n *yaml.Node) (s scalar, ok bool) {
	v := n.Value
	tagged := n.Style&yaml.TaggedStyle != 0
	if tagged {
		switch n.Tag {
		case "!!str":
			return scalar{kind: kStr, str: v}, true
		case "!!null":
			return scalar{kind: kNull, str: "None"}, true
		case "!!bool":
			if reBool.MatchString(v) {
				return boolScalar(v), true
			}
			return scalar{}, false
		case "!!int":
			if reInt.MatchString(v) {
				return intScalar(v), true
			}
			return scalar{}, false
		case "!!float":
			if reFloat.MatchString(v) || reInt.MatchString(v) {
				return floatScalar(v), true
			}
			return scalar{}, false
		case "!!timestamp":
			if reTime.MatchString(v) {
				return scalar{kind: kTime, str: v}, true
			}
			return scalar{}, false
		}
		return scalar{}, false
	}
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return scalar{kind: kStr, str: v}, true
	}
	switch {
	case reNull.MatchString(v):
		return scalar{kind: kNull, str: "None"}, true
	case reBool.MatchString(v):
		return boolScalar(v), true
	case reInt.MatchString(v):
		return intScalar(v), true
	case reFloat.MatchString(v):
		return floatScalar(v), true
	case reTime.MatchString(v):
		return scalar{kind: kTime, str: v}, true
	}
	return scalar{kind: kStr, str: v}, true
}

func boolScalar(v string) scalar {
	switch strings.ToLower(v) {
	case "yes", "true", "on":
		return scalar{kind: kBool, b: true, str: "True"}
	}
	return scalar{kind: kBool, b: false, str: "False"}
}

// intScalar constructs a YAML 1.1 int (underscores, 0b, 0x, leading-0
// octal, base-60 with colons).
func intScalar(v string) scalar {
	v = strings.ReplaceAll(v, "_", "")
	neg := false
	if v != "" && (v[0] == '-' || v[0] == '+') {
		neg = v[0] == '-'
		v = v[1:]
	}
	x := new(big.Int)
	switch {
	case v == "0" || v == "":
	case strings.HasPrefix(v, "0b"):
		x.SetString(v[2:], 2)
	case strings.HasPrefix(v, "0x"):
		x.SetString(v[2:], 16)
	case strings.HasPrefix(v, "0"):
		x.SetString(v[1:], 8)
	case strings.Contains(v, ":"):
		for _, part := range strings.Split(v, ":") {
			d, _ := strconv.Atoi(part)
			x.Mul(x, big.NewInt(60))
			x.Add(x, big.NewInt(int64(d)))
		}
	default:
		x.SetString(v, 10)
	}
	if neg {
		x.Neg(x)
	}
	return scalar{kind: kInt, i: x, str: x.String()}
}

// floatScalar constructs a YAML 1.1 float.
func floatScalar(v string) scalar {
	v = strings.ToLower(strings.ReplaceAll(v, "_", ""))
	sign := 1.0
	if v != "" && (v[0] == '-' || v[0] == '+') {
		if v[0] == '-' {
			sign = -1
		}
		v = v[1:]
	}
	var f float64
	switch {
	case v == ".inf":
		f = math.Inf(1)
	case v == ".nan":
		f = math.NaN()
	case strings.Contains(v, ":"):
		for _, part := range strings.Split(v, ":") {
			d, _ := strconv.ParseFloat(part, 64)
			f = f*60 + d
		}
	default:
		var err error
		f, err = strconv.ParseFloat(v, 64)
		if err != nil && !isRangeErr(err) {
			f = 0
		}
	}
	f *= sign
	return scalar{kind: kFloat, f: f, str: pyFloat(f)}
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// pyFloat formats f as Python's repr/str does: the shortest digits that
// round-trip, "1.0" not "1", exponent form outside 1e-4 <= |f| < 1e16.
func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	exp := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, e, _ := strings.Cut(exp, "e")
	x, _ := strconv.Atoi(e)
	if x < -4 || x >= 16 {
		sign := "+"
		if x < 0 {
			sign = "-"
			x = -x
		}
		return mant + "e" + sign + pad2(x)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

func pad2(x int) string {
	if x < 10 {
		return "0" + strconv.Itoa(x)
	}
	return strconv.Itoa(x)
}

// kindName names a kind for messages.
func kindName(k kind) string {
	switch k {
	case kNull:
		return "null"
	case kBool:
		return "a boolean"
	case kInt, kFloat:
		return "a number"
	case kStr:
		return "a string"
	case kTime:
		return "a date"
	case kMap:
		return "a mapping"
	case kSeq:
		return "a list"
	}
	return "a value of an unsupported type"
}
