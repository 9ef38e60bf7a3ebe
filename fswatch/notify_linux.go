//go:build linux

package fswatch

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// inotify is the kernel's notifier, used directly through x/sys/unix rather
// than through github.com/fsnotify/fsnotify, which cannot do four things
// this daemon needs exactly:
//   - it cannot pass IN_DONT_FOLLOW|IN_ONLYDIR, so a directory swapped for a
//     symbolic link between our lstat and the watch gets the watch on the
//     link's target, outside the tree;
//   - when inotify_add_watch returns a descriptor it already maps to another
//     path (one directory reached by two paths: a bind mount, or a rename
//     whose events were lost), it keeps the old path and reports the new
//     path's events under it, so changes there would go missing;
//   - its reader removes watches on IN_MOVE_SELF and IN_DELETE_SELF in its
//     own goroutine, one event ahead of the consumer, racing our bookkeeping;
//   - it reports a queue overflow on a channel apart from the events.
//
// Here every event, overflow included, comes through read in the kernel's
// order, and the daemon alone maps descriptors to paths.
type inotify struct {
	fd int
	f  *os.File // the fd, non-blocking, so that Close wakes a pending Read
}

// watchMask is what every watch asks for. IN_EXCL_UNLINK leaves out events
// on files that are unlinked but still open: their paths are gone already.
const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MODIFY | unix.IN_ATTRIB |
	unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
	unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW | unix.IN_EXCL_UNLINK

func newNotifier() (notifier, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("create inotify instance: %w", err)
	}
	return &inotify{fd: fd, f: os.NewFile(uintptr(fd), "inotify")}, nil
}

func (n *inotify) add(dir string) (int32, error) {
	wd, err := unix.InotifyAddWatch(n.fd, dir, watchMask)
	if err != nil {
		return -1, err
	}
	return int32(wd), nil
}

func (n *inotify) remove(wd int32) error {
	_, err := unix.InotifyRmWatch(n.fd, uint32(wd))
	return err
}

func (n *inotify) close() error { return n.f.Close() }

func (n *inotify) read(buf []byte) ([]event, error) {
	nr, err := n.f.Read(buf)
	if err != nil {
		return nil, err
	}
	return parseEvents(buf[:nr])
}

// readBufferSize holds many events, and at least one with the longest name.
const readBufferSize = 64 << 10

// parseEvents decodes the inotify_event records in b.
func parseEvents(b []byte) ([]event, error) {
	var evs []event
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(b[0:4]))
		mask := binary.NativeEndian.Uint32(b[4:8])
		end := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(b[12:16]))
		if end > len(b) {
			return evs, fmt.Errorf("inotify event of %d bytes cut short at %d", end, len(b))
		}
		name := strings.TrimRight(string(b[unix.SizeofInotifyEvent:end]), "\x00")
		evs = append(evs, event{wd: wd, op: opsOf(mask), name: name})
		b = b[end:]
	}
	if len(b) != 0 {
		return evs, fmt.Errorf("%d stray bytes after inotify events", len(b))
	}
	return evs, nil
}

var maskOps = []struct {
	mask uint32
	op   op
}{
	{unix.IN_CREATE, opCreate},
	{unix.IN_MOVED_TO, opMovedTo},
	{unix.IN_MODIFY, opWrite},
	{unix.IN_ATTRIB, opAttrib},
	{unix.IN_DELETE, opDelete},
	{unix.IN_MOVED_FROM, opMovedFrom},
	{unix.IN_DELETE_SELF, opDeleteSelf},
	{unix.IN_MOVE_SELF, opMoveSelf},
	{unix.IN_UNMOUNT, opUnmount},
	{unix.IN_IGNORED, opIgnored},
	{unix.IN_Q_OVERFLOW, opOverflow},
	{unix.IN_ISDIR, opIsDir},
}

func opsOf(mask uint32) op {
	var o op
	for _, m := range maskOps {
		if mask&m.mask != 0 {
			o |= m.op
		}
	}
	return o
}
