package spec

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPathologicalInputs: inputs built to explode (aliases, merge keys,
// nesting, substitution) fail fast with an error, or parse, in bounded
// time.
func TestPathologicalInputs(t *testing.T) {
	var merge strings.Builder
	merge.WriteString("x-0: &a0 {cpus: 1}\n")
	for i := 1; i < 30; i++ {
		fmt.Fprintf(&merge, "x-%d: &a%d {<<: [*a%d, *a%d, *a%d, *a%d]}\n", i, i, i-1, i-1, i-1, i-1)
	}
	merge.WriteString("resources:\n  <<: *a29\n")

	var laughs strings.Builder
	laughs.WriteString("envs:\n  L0: &l0 [a, b, c, d, e, f, g, h, i]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&laughs, "  L%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	laughs.WriteString("config:\n  kubernetes:\n    pod_config: {a: *l9}\nresources:\n  ports: *l9\n")

	tests := []struct {
		name    string
		src     string
		wantErr string
	}{
		{"merge keys", merge.String(), "unknown field"},
		{"billion laughs", laughs.String(), "expands to more than"},
		{"deep sequence", strings.Repeat("[", 5000) + strings.Repeat("]", 5000), "must be a mapping"},
		{"deep mapping", "run: x\nconfig: " + strings.Repeat("{a: ", 3000) + "1" + strings.Repeat("}", 3000), "unknown field"},
		{"long value", "run: " + strings.Repeat("x", 5<<20), ""},
		{"many keys", strings.Repeat("envs:\n  A: 1\n", 20000), ""},
		{"substitution", "envs:\n  A: " + strings.Repeat("$A", 1000) + "\nfile_mounts:\n  /x: " + strings.Repeat("$A", 100000), "longer than"},
		{"late syntax error", strings.Repeat("run: echo\n", 1400) + " bad: [\n", "1401:2: invalid YAML"},
		{"early syntax error in a long file", "a: [\nb: c\n" + strings.Repeat("run: echo\n", 1400), "invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse("p.yaml", []byte(tt.src), Options{AllowUnset: true})
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("want valid, got %.300v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error = %.300v, want %q", err, tt.wantErr)
			}
		})
	}
}
