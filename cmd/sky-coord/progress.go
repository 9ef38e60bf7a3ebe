package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/sky-coord/sky-coord/transfer"
)

// barMinBytes is the least a sync handles before it shows a progress bar.
const barMinBytes = 4 << 20

// syncBar shows a sync's progress (bytes, files, rate) on a terminal, once
// it has more than a few MB to handle; elsewhere it is silent. It follows
// the scan, which reads and hashes every file (and, where the CLI writes
// into the coordinator's own store, is the upload itself), then the upload
// of what the coordinator lacks.
type syncBar struct {
	what string
	out  io.Writer
	tty  bool // out is a terminal: else the bar stays silent
	// extra options for mpb (tests force rendering into a buffer)
	opts   []mpb.ContainerOption
	mu     sync.Mutex // guards p, bar and closed
	p      *mpb.Progress
	bar    *mpb.Bar
	closed bool // done was called: later updates are dropped
	// last is the progress the bar shows. The bar's decorators read it
	// from mpb's goroutine without mu: update holds mu while it waits
	// for that goroutine.
	last atomic.Pointer[transfer.Progress]
}

func newSyncBar(what string) *syncBar {
	return &syncBar{what: what, out: os.Stderr, tty: isTerminal(os.Stderr)}
}

func (s *syncBar) update(p transfer.Progress) {
	if (p.Op != "scan" && p.Op != "upload") || !s.tty {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.last.Load()
	switch {
	case s.closed:
		return
	case s.bar == nil:
		if p.TotalBytes < barMinBytes || p.Done {
			return
		}
		s.p = mpb.New(append([]mpb.ContainerOption{mpb.WithOutput(s.out), mpb.WithWidth(20)}, s.opts...)...)
		s.bar = s.p.New(p.TotalBytes, mpb.BarStyle(),
			mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return s.label() })),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return s.counters() })))
	case p.Op == "upload" && p.Done && last != nil && last.Op == "scan" && p.Bytes == last.TotalBytes:
		// The scan wrote into the coordinator's store as it read: the
		// upload that ends at once is the scan's end, already shown.
		return
	}
	s.last.Store(&p)
	s.bar.SetTotal(p.TotalBytes, false) // the totals grow as the scan finds files
	s.bar.SetCurrent(p.Bytes)
	if p.Done && p.Op == "upload" { // a scan's end may be followed by an upload
		s.bar.SetTotal(p.TotalBytes, true)
	}
}

// label and counters render the bar's text; mpb calls them from its own
// goroutine.
func (s *syncBar) label() string {
	verb := "Scanning"
	if p := s.last.Load(); p != nil && p.Op == "upload" {
		verb = "Uploading"
	}
	return fmt.Sprintf("%s %s ", verb, s.what)
}

func (s *syncBar) counters() string {
	p := s.last.Load()
	if p == nil {
		return ""
	}
	unit := "files"
	if p.Op == "upload" {
		unit = "chunks"
	}
	return fmt.Sprintf(" %.1f/%.1f MiB %d/%d %s %.0f MiB/s", mb(p.Bytes), mb(p.TotalBytes), p.Files, p.TotalFiles, unit, mb(int64(p.Rate)))
}

// mb is a byte count in MiB.
func mb(n int64) float64 { return float64(n) / (1 << 20) }

func (s *syncBar) done() {
	s.mu.Lock()
	p := s.p
	s.p, s.closed = nil, true
	s.mu.Unlock()
	if p != nil {
		s.bar.Abort(false)
		p.Wait() // renders a last time
	}
}
