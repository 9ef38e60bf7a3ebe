package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/sky-coord/sky-coord/api"
)

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

var colorOut = isTerminal(os.Stdout) && os.Getenv("NO_COLOR") == ""

func paint(code, s string) string {
	if !colorOut {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func bold(s string) string  { return paint("1", s) }
func dim(s string) string   { return paint("2", s) }
func green(s string) string { return paint("32", s) }
func red(s string) string   { return paint("31", s) }
func cyan(s string) string  { return paint("36", s) }

func colorStatus(s api.JobStatus) string {
	switch s {
	case api.JobSucceeded:
		return green(string(s))
	case api.JobFailed, api.JobFailedSetup, api.JobFailedDriver, api.JobCancelled:
		return red(string(s))
	}
	return string(s)
}

// colorPrefix paints a log line's "(head, rank=0, pid=1) " prefix cyan,
// as SkyPilot does.
func colorPrefix(line string) string {
	if !colorOut || !strings.HasPrefix(line, "(") {
		return line
	}
	end := strings.Index(line, ") ")
	if end < 0 {
		return line
	}
	return cyan(line[:end+1]) + line[end+1:]
}

// table writes rows under a header with aligned columns.
func table(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ago renders a past time as SkyPilot does ("3 mins ago").
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "a few secs ago"
	case d < time.Hour:
		return plural(int(d.Minutes()), "min") + " ago"
	case d < 24*time.Hour:
		return plural(int(d.Hours()), "hr") + " ago"
	}
	return plural(int(d.Hours()/24), "day") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", unit)
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func duration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
}
