package bootstrap

import (
	"context"
	"io"
	"io/fs"
	"net"
	"strings"
)

// Optional Transport capabilities, found by type assertion.

// Archer reports the node's architecture as a Go GOARCH ("amd64",
// "arm64"), so Ensure can pick the agent binary built for it. A Transport
// without it is taken to be this machine's architecture.
type Archer interface {
	Arch(ctx context.Context) (string, error)
}

// CompressedWriter installs a file sent gzip-compressed: the node
// decompresses it, checks that its sha256 is sum and renames it into
// place with mode.
type CompressedWriter interface {
	WriteFileGzip(ctx context.Context, path string, gz io.Reader, mode fs.FileMode, sum string) error
}

// Commander runs a POSIX shell script on the node, args as $1, $2, …, and
// returns its standard output; a non-zero exit is an error carrying its
// stderr (a *RemoteError for SSH).
type Commander interface {
	Run(ctx context.Context, script string, args ...string) ([]byte, error)
}

// Remover removes a path and everything below it; a missing path is not
// an error.
type Remover interface {
	RemoveAll(ctx context.Context, path string) error
}

// AgentDialer opens TCP connections as seen from the node (through the
// SSH connection, for SSH), so the coordinator reaches an agent that
// listens on the node's own address with no port open to it. It fits
// http.Transport.DialContext.
type AgentDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// GOARCH maps `uname -m` output to Go's GOARCH names; other values are
// returned as they are.
func GOARCH(unameM string) string {
	m := strings.TrimSpace(unameM)
	switch m {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64", "armv8l", "armv8b":
		return "arm64"
	case "i386", "i486", "i586", "i686":
		return "386"
	case "armv6l", "armv7l":
		return "arm"
	case "ppc64le", "s390x", "riscv64", "loong64":
		return m
	case "mips64":
		return "mips64"
	}
	return m
}
