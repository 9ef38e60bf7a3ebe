// Package ptystream is the framing of an interactive terminal session
// (`sky-coord ssh`) over one upgraded HTTP connection: CLI ⇄ coordinator ⇄
// agent. Each frame is one kind byte, a big-endian uint32 length and the
// payload. The client sends Data (keystrokes), Resize and EOF; the agent
// sends Data (terminal output) and, last, Exit.
package ptystream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Protocol is the HTTP Upgrade token.
const Protocol = "sky-shell"

// Kind is a frame's type.
type Kind byte

// Frame kinds.
const (
	Data   Kind = 'd'
	Resize Kind = 'r'
	EOF    Kind = 'e'
	Exit   Kind = 'x'
)

// MaxPayload bounds one frame.
const MaxPayload = 1 << 20

// Write sends one frame.
func Write(w io.Writer, k Kind, p []byte) error {
	if len(p) > MaxPayload {
		return fmt.Errorf("ptystream: %d-byte frame exceeds %d", len(p), MaxPayload)
	}
	var hdr [5]byte
	hdr[0] = byte(k)
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := w.Write(append(hdr[:], p...)); err != nil {
		return err
	}
	return nil
}

// Read reads one frame.
func Read(r io.Reader) (Kind, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxPayload {
		return 0, nil, fmt.Errorf("ptystream: %d-byte frame exceeds %d", n, MaxPayload)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return Kind(hdr[0]), p, nil
}

// ResizePayload encodes a terminal size.
func ResizePayload(rows, cols uint16) []byte {
	p := make([]byte, 4)
	binary.BigEndian.PutUint16(p, rows)
	binary.BigEndian.PutUint16(p[2:], cols)
	return p
}

// ParseResize decodes a terminal size.
func ParseResize(p []byte) (rows, cols uint16, err error) {
	if len(p) != 4 {
		return 0, 0, errors.New("ptystream: resize frame must be 4 bytes")
	}
	return binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), nil
}

// ExitPayload encodes an exit code.
func ExitPayload(code int) []byte {
	p := make([]byte, 4)
	binary.BigEndian.PutUint32(p, uint32(int32(code)))
	return p
}

// ParseExit decodes an exit code.
func ParseExit(p []byte) (int, error) {
	if len(p) != 4 {
		return 0, errors.New("ptystream: exit frame must be 4 bytes")
	}
	return int(int32(binary.BigEndian.Uint32(p))), nil
}

// Conn is an upgraded connection; reads go through its buffer first.
type Conn struct {
	net.Conn
	r *bufio.Reader
}

func (c *Conn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Dial sends req (a GET to a shell endpoint) over conn asking for the
// upgrade and returns the connection once the server switched protocols.
// Any other answer is returned as an error carrying the server's message.
func Dial(conn net.Conn, req *http.Request) (*Conn, error) {
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", Protocol)
	if err := req.Write(conn); err != nil {
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, &HTTPError{Status: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	return &Conn{Conn: conn, r: br}, nil
}

// HTTPError is a refused upgrade.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// Accept switches an incoming request to the shell protocol: it checks the
// Upgrade header, hijacks the connection and writes 101.
func Accept(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), Protocol) {
		http.Error(w, "this endpoint needs `Upgrade: "+Protocol+"`", http.StatusUpgradeRequired)
		return nil, errors.New("no upgrade header")
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection: "+err.Error(), http.StatusInternalServerError)
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{}) // the server's timeouts do not apply to a session
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+Protocol+"\r\n\r\n"); err != nil {
		conn.Close()
		return nil, err
	}
	return &Conn{Conn: conn, r: brw.Reader}, nil
}
