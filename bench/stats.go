package main

import (
	"fmt"
	"sort"
	"time"
)

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// median is the middle value (the mean of the two middle ones for an
// even count).
func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// secs renders a duration in seconds with three decimals.
func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

// mbps renders bytes moved in d as MB/s (10^6 bytes).
func mbps(bytes int64, d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MB/s", float64(bytes)/d.Seconds()/1e6)
}

// list renders durations as "a, b, c" in the order measured.
func list(d []time.Duration, f func(time.Duration) string) string {
	out := ""
	for i, x := range d {
		if i > 0 {
			out += ", "
		}
		out += f(x)
	}
	return out
}

// medianFloat is the middle value of xs (the mean of the two middle ones
// for an even count).
func medianFloat(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// floats renders writes-per-second figures as "a, b, c".
func floats(xs []float64) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%.0f", x)
	}
	return out
}
