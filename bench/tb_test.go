package main

import (
	"strings"
	"testing"
	"time"
)

func TestWithTBRunsCleanupsNewestFirst(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     func(t *tb) error
		wantSkip string
		wantErr  string
	}{
		{name: "ok", body: func(*tb) error { return nil }},
		{name: "fatal", body: func(t *tb) error { t.Fatalf("no %s", "hosts"); return nil }, wantErr: "no hosts"},
		{name: "skip", body: func(t *tb) error { t.Skip("not root"); return nil }, wantSkip: "not root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var order []int
			skip, err := withTB(tc.name, false, func(x *tb) error {
				x.Cleanup(func() { order = append(order, 1) })
				x.Cleanup(func() { order = append(order, 2) })
				return tc.body(x)
			})
			if skip != tc.wantSkip {
				t.Errorf("skip = %q, want %q", skip, tc.wantSkip)
			}
			if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
			}
			if len(order) != 2 || order[0] != 2 || order[1] != 1 {
				t.Errorf("cleanups ran in order %v, want [2 1]", order)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{ms(3, 1, 2), 2 * time.Millisecond},
		{ms(4, 1), 2500 * time.Microsecond},
		{nil, 0},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := thousands(1234567); got != "1,234,567" {
		t.Errorf("thousands = %q", got)
	}
}
