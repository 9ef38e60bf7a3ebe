package agent

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// runLog is the head's ~/sky_logs/<LogDir>/run.log: the lines of every
// node's process, each behind its prefix ("(head, rank=0, pid=N) "), and
// the job's own messages (the "ERROR: ..." lines).
type runLog struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	f      *os.File
	failed bool // a write failed: said once in the agent's log
}

func openRunLog(path string, log *slog.Logger) (*runLog, error) {
	if err := os.MkdirAll(filepath.Join(filepath.Dir(path), "tasks"), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &runLog{path: path, log: log, f: f}, nil
}

// line appends s and a newline.
func (l *runLog) line(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writeLocked([]byte(s + "\n"))
}

func (l *runLog) writeLocked(b []byte) {
	if l.f == nil {
		return
	}
	if _, err := l.f.Write(b); err != nil && !l.failed {
		l.failed = true
		l.log.Warn("write run.log failed; later lines are lost", "path", l.path, "err", err)
	}
}

// close ends the file; later writes are dropped.
func (l *runLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	if err := l.f.Close(); err != nil && !l.failed {
		l.log.Warn("close run.log failed", "path", l.path, "err", err)
	}
	l.f = nil
}

// stream returns a writer that puts prefix before each line it gets.
func (l *runLog) stream(prefix string) *prefixWriter {
	return &prefixWriter{l: l, prefix: []byte(prefix)}
}

// prefixWriter writes whole lines into a runLog, each behind its prefix,
// so lines of nodes writing at once never mix.
type prefixWriter struct {
	l       *runLog
	prefix  []byte
	partial []byte
}

func (p *prefixWriter) Write(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.partial = append(p.partial, b...)
			return
		}
		line := make([]byte, 0, len(p.prefix)+len(p.partial)+i+1)
		line = append(append(append(line, p.prefix...), p.partial...), b[:i+1]...)
		p.partial = p.partial[:0]
		p.l.mu.Lock()
		p.l.writeLocked(line)
		p.l.mu.Unlock()
		b = b[i+1:]
	}
}

// Close writes a last line that had no newline.
func (p *prefixWriter) Close() {
	if len(p.partial) > 0 {
		p.Write([]byte("\n"))
	}
}

// crlfStripper removes the "\r" a pty puts before each "\n" (any run of
// "\r" right before "\n"), across chunk boundaries; a lone "\r" (a
// progress bar) stays.
type crlfStripper struct {
	pendingCR int // "\r"s at the end of the last chunk
}

func (c *crlfStripper) strip(b []byte) []byte {
	out := make([]byte, 0, len(b)+c.pendingCR)
	cr := c.pendingCR
	for _, ch := range b {
		switch ch {
		case '\r':
			cr++
			continue
		case '\n':
			cr = 0
		}
		for ; cr > 0; cr-- {
			out = append(out, '\r')
		}
		out = append(out, ch)
	}
	c.pendingCR = cr
	return out
}

// flush returns the "\r"s held back at the very end.
func (c *crlfStripper) flush() []byte {
	out := bytes.Repeat([]byte{'\r'}, c.pendingCR)
	c.pendingCR = 0
	return out
}
