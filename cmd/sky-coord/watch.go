package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sky-coord/sky-coord/fswatch"
	"github.com/sky-coord/sky-coord/transfer"
	"github.com/sky-coord/sky-coord/workdir"
)

// The file watcher: a per-user daemon (`sky-coord watch-daemon`, package
// fswatch) that tells a re-sync which paths of a workdir changed since the
// last one, so that it looks at those only instead of every file. The
// CLI starts it on the first launch or exec that finds none; `server
// stop` stops it, and it exits by itself after watchIdle without a query.
// SKY_COORD_WATCH=0 turns it off: every sync then stats every file.
const watchIdle = 12 * time.Hour

func watchSocket() string { return filepath.Join(skyHome(), "watch.sock") }

// workdirSocket is where the same daemon uploads workdirs (package
// workdir) from the descriptions it holds.
func workdirSocket() string { return filepath.Join(skyHome(), "workdir.sock") }

func watchDisabled() bool { return os.Getenv("SKY_COORD_WATCH") == "0" }

// watchStarted is set when this process started the daemon: its first
// query waits for it to answer.
var watchStarted time.Time

// ensureWatcher starts the watch daemon in the background when none
// answers. It does not wait: the upload that follows gives it time.
func ensureWatcher() {
	if watchDisabled() {
		return
	}
	if c, err := net.DialTimeout("unix", watchSocket(), 100*time.Millisecond); err == nil {
		_ = c.Close() // only a probe
		return
	}
	home := skyHome()
	if err := os.MkdirAll(home, 0o700); err != nil {
		return // the upload scans in full, and says nothing: only speed is lost
	}
	// In home, not the user's directory, which it would keep busy.
	if cmd, err := startDetached(filepath.Join(home, "watch.log"), home, "watch-daemon"); err == nil {
		watchStarted = time.Now()
		go func() { _ = cmd.Wait() }() // reaped if it exits while we run
	}
}

// treeWatch is what the watcher says about one tree before its upload.
type treeWatch struct {
	root    string             // symbolic links resolved
	snap    *transfer.Snapshot // the last description, when it can be built on
	changes fswatch.Changes
	ok      bool // the watcher answered: changes.Token is good
}

// watchTree asks the watcher what changed under root since the snapshot
// saved at snapPath was built. Without an answer the upload scans in full
// and keeps no snapshot.
func watchTree(ctx context.Context, root, snapPath string) treeWatch {
	w := treeWatch{root: root}
	if watchDisabled() {
		return w
	}
	w.snap = transfer.LoadSnapshot(snapPath, root)
	since := ""
	if w.snap != nil {
		since = w.snap.Token
	}
	// A daemon this process started gets time to come up; one that was
	// running gets one try.
	deadline := watchStarted.Add(3 * time.Second)
	for {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		ch, err := fswatch.Query(qctx, watchSocket(), root, since)
		cancel()
		if err == nil {
			w.changes, w.ok = ch, true
			return w
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return w
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// incremental reports whether the upload can describe the tree from the
// snapshot and the changed paths.
func (w treeWatch) incremental() bool {
	return w.ok && !w.changes.Full && w.snap != nil
}

// save keeps what the next sync builds on: the description and the token
// from before it was built, and reports whether it did. Without a token,
// a snapshot left from earlier is removed (it would be built on with
// changes nobody recorded).
func (w treeWatch) save(tree *transfer.Tree, snapPath string) bool {
	if !w.ok {
		_ = os.Remove(snapPath) // best effort: a token from another daemon reads as Full anyway
		return false
	}
	return tree.Snapshot(w.changes.Token).Save(snapPath) == nil // only a speed-up
}

// watcherPredatesWorkdir reports whether the watch daemon that answers is
// one from before the workdir service: a socket for queries and none for
// uploads. A daemon this process started may not have opened both yet.
func watcherPredatesWorkdir() bool {
	if !watchStarted.IsZero() {
		return false
	}
	if _, err := os.Stat(workdirSocket()); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	c, err := net.DialTimeout("unix", watchSocket(), 100*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close() // only a probe
	return true
}

// restartWatcher replaces the running watch daemon with one of this
// build, and reports whether it did. A new daemon leaves at once while
// the old one holds the lock, which it lets go of last: so it waits for
// that first.
func restartWatcher(ctx context.Context) bool {
	if !stopWatcher(ctx) {
		return false
	}
	lock, err := os.OpenFile(filepath.Join(skyHome(), "watch.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return false
	}
	defer lock.Close()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
			ensureWatcher()
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// stopWatcher asks a running watch daemon to exit, and waits until it
// has (its socket is gone).
func stopWatcher(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if fswatch.Stop(ctx, watchSocket()) != nil {
		return false
	}
	for ctx.Err() == nil {
		if _, err := os.Stat(watchSocket()); errors.Is(err, fs.ErrNotExist) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func watchDaemonCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "watch-daemon",
		Short:  "Watch synced workdirs for changes (started by the CLI)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWatchDaemon(cmd.Context())
		},
	}
}

func runWatchDaemon(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	home := skyHome()
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	// One daemon per home: the lock is held for its lifetime, so a
	// second one started at the same moment leaves.
	lock, err := os.OpenFile(filepath.Join(home, "watch.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil
		}
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	// The workdir socket comes first and goes last: a watch socket
	// without one is a daemon from before the workdir service (see
	// watcherPredatesWorkdir).
	listen := func(sock string) (net.Listener, error) {
		_ = os.Remove(sock) // left by a daemon that died: the lock says none runs
		old := syscall.Umask(0o077)
		defer syscall.Umask(old)
		l, err := net.Listen("unix", sock)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", sock, err)
		}
		return l, nil
	}
	wsock, sock := workdirSocket(), watchSocket()
	wl, err := listen(wsock)
	if err != nil {
		return err
	}
	defer os.Remove(wsock)
	l, err := listen(sock)
	if err != nil {
		_ = wl.Close()
		return err
	}
	defer os.Remove(sock)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})) // fswatch names its component
	d, err := fswatch.NewDaemon(log, filepath.Join(home, "watch"), fswatch.Options{IdleTimeout: watchIdle})
	if err != nil {
		_ = l.Close()
		_ = wl.Close()
		return err
	}
	defer d.Close()
	wctx, stopService := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- workdir.NewService(log, d, version).Serve(wctx, wl) }()
	log.Info("watching", "socket", sock, "workdir_socket", wsock, "pid", os.Getpid())
	err = d.Serve(ctx, l)
	stopService()
	if werr := <-served; err == nil {
		err = werr
	}
	log.Info("stopped", "err", err)
	return err
}
