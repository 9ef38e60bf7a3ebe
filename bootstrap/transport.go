// Package bootstrap brings a fresh node to a running, healthy sky-agent
// over a Transport (local exec, or SSH and SFTP), and removes it again. It
// is idempotent: a second run on a ready node changes nothing.
package bootstrap

import (
	"context"
	"io"
	"io/fs"
)

// Transport reaches one node. Paths are relative to the node's home
// unless absolute.
type Transport interface {
	// Home is the node's home directory ("~").
	Home() string
	// FileSHA256 returns the hex sha256 of a file, or "" when it is missing.
	FileSHA256(ctx context.Context, path string) (string, error)
	// ReadFile returns a file's contents.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// WriteFile replaces a file atomically with r's contents.
	WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error
	// StartDetached starts argv in a new session that outlives the
	// transport, output appended to logPath, and returns its pid.
	StartDetached(ctx context.Context, argv, env []string, logPath string) (int, error)
	// Signal sends sig to a process (0 checks that it exists).
	Signal(ctx context.Context, pid int, sig int) error
	Close() error
}
