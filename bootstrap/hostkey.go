package bootstrap

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"
)

// DefaultAcceptHint tells a user how to accept a host's new key; "{host}"
// stands for the host's address (host:port).
const DefaultAcceptHint = "if the machine was reinstalled and the new key is expected, run `sky-coord ssh-keys forget {host}` and retry"

// ErrHostKeyChanged means a host offered a key other than the one pinned
// for it: the machine was reinstalled, or someone is in the middle.
var ErrHostKeyChanged = errors.New("host key changed")

// HostKeyPolicy pins host keys on first use. The keys themselves are kept
// by the caller (the coordinator stores them in its replicated state).
type HostKeyPolicy struct {
	// Known is the key pinned for the host in authorized_keys format
	// ("ssh-ed25519 AAAA…"), or "" when none is known yet.
	Known string
	// OnFirstUse is called with the host (host:port) and the key it
	// offered, in authorized_keys format, when Known is "": the caller
	// stores it. An error refuses the connection. When nil the key is
	// accepted; SSH.HostKey returns it after the dial.
	OnFirstUse func(host, key string) error
	// AcceptHint says how to accept a changed key, "{host}" standing for
	// host:port; "" uses DefaultAcceptHint.
	AcceptHint string
}

// HostKeyChangedError is the error of a dial refused because the host's
// key is not the pinned one. It matches ErrHostKeyChanged.
type HostKeyChangedError struct {
	Host string // host:port
	// Known and Offered are SHA256 fingerprints ("SHA256:…") with the key
	// type; Offered is "" when the host offers no key of the pinned type.
	Known, KnownType     string
	Offered, OfferedType string
	Hint                 string
}

func (e *HostKeyChangedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the host key of %s has changed: sky-coord pinned %s %s", e.Host, e.KnownType, e.Known)
	if e.Offered != "" {
		fmt.Fprintf(&b, ", the host now offers %s %s", e.OfferedType, e.Offered)
	} else {
		fmt.Fprintf(&b, ", the host no longer offers a %s key", e.KnownType)
	}
	b.WriteString("; someone may be intercepting the connection, or the machine was reinstalled")
	if e.Hint != "" {
		b.WriteString("; " + e.Hint)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrHostKeyChanged) hold.
func (e *HostKeyChangedError) Is(target error) bool { return target == ErrHostKeyChanged }

// ParseHostKey parses a key in authorized_keys format.
func ParseHostKey(s string) (ssh.PublicKey, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("parse host key %q: %w", abbreviate(s), err)
	}
	return k, nil
}

// FormatHostKey renders a key in authorized_keys format, no newline.
func FormatHostKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// callback builds the x/crypto/ssh callback for the policy; seen receives
// the key the host offered.
func (p HostKeyPolicy) callback(hostport string, known ssh.PublicKey, seen *string) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		*seen = FormatHostKey(key)
		if known != nil {
			if key.Type() == known.Type() && string(key.Marshal()) == string(known.Marshal()) {
				return nil
			}
			return p.changed(hostport, known, key)
		}
		if p.OnFirstUse != nil {
			if err := p.OnFirstUse(hostport, *seen); err != nil {
				return fmt.Errorf("record host key %s %s of %s: %w", key.Type(), ssh.FingerprintSHA256(key), hostport, err)
			}
		}
		return nil
	}
}

func (p HostKeyPolicy) changed(hostport string, known, offered ssh.PublicKey) *HostKeyChangedError {
	hint := p.AcceptHint
	if hint == "" {
		hint = DefaultAcceptHint
	}
	e := &HostKeyChangedError{Host: hostport, Known: ssh.FingerprintSHA256(known), KnownType: known.Type(),
		Hint: strings.ReplaceAll(hint, "{host}", hostport)}
	if offered != nil {
		e.Offered, e.OfferedType = ssh.FingerprintSHA256(offered), offered.Type()
	}
	return e
}

// hostKeyAlgorithms are the algorithms to ask for so that a host offers
// the key type that was pinned.
func hostKeyAlgorithms(k ssh.PublicKey) []string {
	if k.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{k.Type()}
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}
