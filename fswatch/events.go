package fswatch

import (
	"fmt"
	"slices"
	"strings"
)

// readEvents processes the notifier's events, in order, until Close.
func (d *Daemon) readEvents() {
	defer close(d.readerDone)
	buf := make([]byte, readBufferSize)
	for {
		d.mu.Lock()
		n := d.n
		stop := d.closed || n == nil
		d.mu.Unlock()
		if stop {
			return
		}
		evs, err := n.read(buf)
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return
		}
		for _, ev := range evs {
			if !d.handle(ev) {
				break // the rest came from the notifier just replaced
			}
		}
		if err != nil && n == d.n {
			d.log.Error("reading file change events failed", "err", err)
			d.resetAll(fmt.Sprintf("reading the event queue failed: %v", err))
		}
		d.mu.Unlock()
	}
}

// handle applies one event. It returns false when it replaced the notifier:
// the events read with this one are then meaningless. Called with mu held.
func (d *Daemon) handle(ev event) bool {
	switch {
	case ev.op&opOverflow != 0:
		d.log.Warn("the event queue overflowed; rescanning every root")
		d.resetAll("event queue overflowed")
		return false
	case ev.op&opUnmount != 0:
		d.log.Warn("a watched filesystem was unmounted; rescanning every root", "wd", ev.wd)
		d.resetAll("a filesystem under a root was unmounted")
		return false
	}
	w := d.watches.byWd[ev.wd]
	if w == nil {
		return true // for a watch removed since: what it saw is covered otherwise
	}
	d.seq++
	for _, dir := range slices.Clone(w.paths) {
		if ev.name == "" {
			d.handleSelf(dir, ev.op, w)
		} else {
			d.handleEntry(dir, ev.name, ev.op)
		}
	}
	return true
}

// handleSelf applies an event about watched directory dir itself.
func (d *Daemon) handleSelf(dir string, o op, w *watch) {
	switch {
	case o&(opDeleteSelf|opIgnored) != 0:
	case o&opMoveSelf != 0:
		// Its new path may have been watched already, before the event
		// naming its old one was processed: keep a path that leads to it.
		if id, ok := idAt(dir); ok && id == w.id {
			return
		}
	default:
		d.markPath(dir, false)
		return
	}
	// Gone or renamed away, and its parent is not watched, or it is and
	// this event came first: a root, the state directory, or any other.
	d.markPath(dir, true)
	d.dropTree(dir, "")
}

// handleEntry applies an event about entry name of watched directory dir.
func (d *Daemon) handleEntry(dir, name string, o op) {
	p := joinPath(dir, name)
	if dir == d.stateDir && strings.HasPrefix(name, cookiePrefix) {
		if seen, ok := d.cookies[name]; ok && o&opCreate != 0 {
			close(seen)
			delete(d.cookies, name)
		}
		return // ours, even where a root holds the state directory
	}
	d.markPath(p, o&(opCreate|opMovedTo|opDelete|opMovedFrom) != 0)
	if o&(opDelete|opMovedFrom) != 0 {
		d.dropTree(p, "")
	}
	if o&opIsDir == 0 {
		return
	}
	_, watched := d.watches.byPath[p]
	// A directory made or moved in, or one that may have become readable.
	if o&(opCreate|opMovedTo) != 0 || (o&opAttrib != 0 && !watched) {
		if err := d.watchTree(p, unknownDev, true); err != nil {
			d.failContaining(p, err)
		}
	}
}

// resetAll replaces the notifier with a new one and watches every root
// afresh: events were lost, so every token issued so far gets Full, for
// why. Called with mu held, by readEvents only.
func (d *Daemon) resetAll(why string) {
	if err := d.n.close(); err != nil {
		d.log.Warn("closing the inotify instance failed", "err", err)
	}
	d.n = nil
	d.watches = newWatchSet()
	for name, seen := range d.cookies {
		close(seen) // their queries now find their tokens too old
		delete(d.cookies, name)
	}
	d.seq++
	for _, r := range d.roots {
		if r.active() {
			r.reset(d.seq, why)
		}
	}
	n, err := newNotifier()
	if err == nil {
		d.n = n
		err = d.watchStateDir()
	}
	if err != nil {
		d.broken = fmt.Sprintf("the file watcher broke: %v", err)
		d.log.Error("file watcher broken", "err", err)
		if d.n != nil {
			_ = d.n.close() // broken either way
			d.n = nil
		}
		return
	}
	for _, r := range d.roots {
		if !r.active() {
			continue
		}
		if err := d.watchTree(r.path, r.id.dev, false); err != nil {
			d.fail(r, watchFailure(err))
		}
	}
}
