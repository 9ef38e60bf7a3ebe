package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vbauerster/mpb/v8"

	"github.com/sky-coord/sky-coord/transfer"
)

// The bar follows the scan, then the upload of what the coordinator
// lacks; where the scan wrote into the store itself, the upload that
// ends at once leaves the scan's figures. Small syncs and output that is
// no terminal get no bar.
func TestSyncBar(t *testing.T) {
	const mib = 1 << 20
	scan := []transfer.Progress{
		{Op: "scan", Bytes: 3 * mib, TotalBytes: 10 * mib, Files: 10, TotalFiles: 20, Rate: 30 * mib},
		{Op: "scan", Bytes: 10 * mib, TotalBytes: 10 * mib, Files: 20, TotalFiles: 20, Rate: 40 * mib, Done: true},
	}
	cases := []struct {
		name    string
		tty     bool
		updates []transfer.Progress
		want    []string // in the last frame
		none    bool
	}{
		{"scan then upload", true, append(scan[:2:2],
			transfer.Progress{Op: "upload", Bytes: 2 * mib, TotalBytes: 6 * mib, Files: 2, TotalFiles: 4, Rate: 20 * mib},
			transfer.Progress{Op: "upload", Bytes: 6 * mib, TotalBytes: 6 * mib, Files: 4, TotalFiles: 4, Rate: 25 * mib, Done: true}),
			[]string{"Uploading workdir", "6.0/6.0 MiB", "4/4 chunks", "25 MiB/s"}, false},
		{"scan into the store", true, append(scan[:2:2],
			transfer.Progress{Op: "upload", Bytes: 10 * mib, TotalBytes: 10 * mib, Files: 5, TotalFiles: 5, Done: true}),
			[]string{"Scanning workdir", "10.0/10.0 MiB", "20/20 files", "40 MiB/s"}, false},
		{"small", true, []transfer.Progress{{Op: "scan", Bytes: 1, TotalBytes: mib, Files: 1, TotalFiles: 2}}, nil, true},
		{"no terminal", false, scan, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			b := &syncBar{what: "workdir", out: &out, tty: c.tty, opts: []mpb.ContainerOption{mpb.WithAutoRefresh(), mpb.WithWidth(120)}}
			for _, p := range c.updates {
				b.update(p)
			}
			b.done()
			b.update(transfer.Progress{Op: "scan", Bytes: 1, TotalBytes: 20 * mib}) // after done: ignored
			if c.none {
				if out.Len() > 0 {
					t.Errorf("wrote %q, want nothing", out.String())
				}
				return
			}
			frames := strings.Split(strings.TrimRight(out.String(), "\r\n"), "\n")
			last := frames[len(frames)-1]
			for _, w := range c.want {
				if !strings.Contains(last, w) {
					t.Errorf("last frame %q lacks %q", last, w)
				}
			}
		})
	}
}
