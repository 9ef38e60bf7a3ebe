package main

import (
	"fmt"
	"os"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/sky-coord/sky-coord/transfer"
)

// barMinBytes is the least a sync sends before it shows a progress bar.
const barMinBytes = 4 << 20

// syncBar shows an upload's progress (bytes, chunks, rate) on a terminal,
// once it has more than a few MB to send; elsewhere it is silent.
type syncBar struct {
	what string
	mu   sync.Mutex
	p    *mpb.Progress
	bar  *mpb.Bar
}

func newSyncBar(what string) *syncBar { return &syncBar{what: what} }

func (s *syncBar) update(p transfer.Progress) {
	if p.Op != "upload" || !isTerminal(os.Stderr) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bar == nil {
		if p.TotalBytes < barMinBytes || p.Done {
			return
		}
		s.p = mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
		s.bar = s.p.New(p.TotalBytes, mpb.BarStyle(),
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("Syncing %s ", s.what)), decor.CountersKibiByte("% .1f / % .1f")),
			mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), " % .1f"), decor.Name(" "), decor.Percentage()))
	}
	s.bar.SetTotal(p.TotalBytes, false) // an upload learns its total as the scan goes
	s.bar.SetCurrent(p.Bytes)
	if p.Done {
		s.bar.SetTotal(p.TotalBytes, true)
	}
}

func (s *syncBar) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		s.bar.Abort(false)
		s.p.Wait()
		s.p = nil
	}
}
