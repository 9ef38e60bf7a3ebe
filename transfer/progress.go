package transfer

import (
	"sync"
	"sync/atomic"
	"time"
)

// Progress is a snapshot of a long operation, for a progress bar.
type Progress struct {
	// Op names the operation: "scan" (BuildManifest), "upload", "fetch"
	// or "apply".
	Op         string
	Bytes      int64 // bytes done
	TotalBytes int64 // bytes to do; for "scan", the bytes of all files found
	Files      int   // items done: files for scan and apply, chunks for upload and fetch
	TotalFiles int
	Rate       float64 // bytes per second since the operation started
	Done       bool    // the last call for this operation
}

// ProgressFunc receives progress. Calls for one operation never overlap,
// come at most about every 100 ms, and end with one where Done is set
// (unless the operation failed). It must return quickly.
type ProgressFunc func(Progress)

const progressEvery = 100 * time.Millisecond

// meter counts work done and reports it to a ProgressFunc, throttled. A
// nil *meter counts nothing.
type meter struct {
	fn         ProgressFunc
	op         string
	start      time.Time
	totalFiles atomic.Int64
	totalBytes atomic.Int64
	files      atomic.Int64
	bytes      atomic.Int64
	next       atomic.Int64 // unix nanos of the next report

	mu sync.Mutex
}

func newMeter(fn ProgressFunc, op string, totalFiles int, totalBytes int64) *meter {
	if fn == nil {
		return nil
	}
	now := time.Now()
	m := &meter{fn: fn, op: op, start: now}
	m.totalFiles.Store(int64(totalFiles))
	m.totalBytes.Store(totalBytes)
	m.next.Store(now.Add(progressEvery).UnixNano())
	return m
}

// grow raises the totals, for operations that learn them as they go.
func (m *meter) grow(files int, bytes int64) {
	if m == nil {
		return
	}
	m.totalFiles.Add(int64(files))
	m.totalBytes.Add(bytes)
}

func (m *meter) add(files int, bytes int64) {
	if m == nil {
		return
	}
	m.files.Add(int64(files))
	m.bytes.Add(bytes)
	now := time.Now().UnixNano()
	next := m.next.Load()
	if now < next || !m.next.CompareAndSwap(next, now+int64(progressEvery)) {
		return
	}
	if m.mu.TryLock() {
		m.report(false)
		m.mu.Unlock()
	}
}

func (m *meter) done() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.report(true)
	m.mu.Unlock()
}

func (m *meter) report(done bool) {
	p := Progress{
		Op:         m.op,
		Bytes:      m.bytes.Load(),
		TotalBytes: m.totalBytes.Load(),
		Files:      int(m.files.Load()),
		TotalFiles: int(m.totalFiles.Load()),
		Done:       done,
	}
	if s := time.Since(m.start).Seconds(); s > 0 {
		p.Rate = float64(p.Bytes) / s
	}
	m.fn(p)
}
