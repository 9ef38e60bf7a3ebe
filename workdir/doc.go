// Package workdir uploads a user's directory tree for a sync from the
// watch daemon, where the tree's last description stays in memory.
//
// A re-sync that the CLI describes itself pays for a cold process: it
// reads and decodes the last description (a transfer.Snapshot of a few
// hundred KB for 5,000 files), encodes the new one and asks the
// coordinator about every chunk, each on memory the process touches for
// the first time. The watch daemon (package fswatch) already runs for as
// long as the user syncs and knows what changed; a Service beside it
// keeps each tree's description, builds the next one from the changed
// paths, uploads what the coordinator lacks and saves the snapshot, so
// that the CLI only asks (Ask) and waits.
//
// Whatever the Service cannot do from a description it holds — no
// snapshot yet, a watcher that lost track, an ignore file that changed —
// it answers ErrFallback, and the CLI describes the tree itself, as it
// does without a daemon. The snapshot file stays the one truth both
// share: the Service reads it again whenever it changed behind it.
package workdir
