package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/sky-coord/sky-coord/bootstrap"
	"github.com/sky-coord/sky-coord/providers"
)

// dial opens an SSH transport to a machine, pinning its host key in
// HostKeys on first use.
func (p *Provider) dial(ctx context.Context, h Host) (*bootstrap.SSH, error) {
	name := h.User + "@" + h.IP
	if h.Port != 22 {
		name = h.User + "@" + h.Addr()
	}
	policy := bootstrap.HostKeyPolicy{AcceptHint: p.AcceptHint}
	if p.HostKeys != nil {
		known, err := p.HostKeys.HostKey(ctx, h.Addr())
		if err != nil {
			return nil, fmt.Errorf("%s: look up its pinned host key: %w", name, err)
		}
		policy.Known = known
		policy.OnFirstUse = func(host, key string) error { return p.HostKeys.RememberHostKey(ctx, h.Addr(), key) }
	}
	return bootstrap.DialSSH(ctx, bootstrap.SSHConfig{
		Host: h.IP, Port: h.Port, User: h.User, IdentityFile: h.IdentityFile,
		HostKey: policy, ConnectTimeout: p.ConnectTimeout, Name: name,
	})
}

// Transport hands out a bootstrap transport to one of the provider's
// instances (the coordinator's Connector capability). The caller closes
// it.
func (p *Provider) Transport(ctx context.Context, inst providers.Instance) (bootstrap.Transport, error) {
	r, err := p.read()
	if err != nil {
		return nil, err
	}
	for _, a := range r.Hosts {
		if a.id() == inst.ID {
			return p.dial(ctx, a.Host)
		}
	}
	return nil, fmt.Errorf("instance %s (%s) is not held by the ssh provider: %w", inst.ID, inst.IP, providers.ErrInvalidRequest)
}

// DialContext opens a TCP connection to addr as seen from the pool
// machine whose address is addr's host, through an SSH connection kept
// open per machine: the coordinator reaches an agent on the machine's own
// address with no port open to it. It fits http.Transport.DialContext.
func (p *Provider) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s through SSH: %w", addr, err)
	}
	r, err := p.read()
	if err != nil {
		return nil, err
	}
	var target *allocation
	for _, a := range r.Hosts {
		if a.Host.IP == host {
			target = a
			break
		}
	}
	if target == nil {
		return nil, fmt.Errorf("dial %s through SSH: no machine of an SSH node pool has the address %s", addr, host)
	}
	for attempt := 0; ; attempt++ {
		t, err := p.conn(ctx, target.Host)
		if err != nil {
			return nil, err
		}
		c, err := t.DialContext(ctx, network, addr)
		if err == nil {
			return c, nil
		}
		select {
		case <-t.Done():
			p.forget(target.Host.Addr(), t)
			if attempt == 0 {
				continue // the connection had died: dial once more
			}
		default:
		}
		return nil, err
	}
}

// conn returns the kept connection to h, dialing it when there is none.
func (p *Provider) conn(ctx context.Context, h Host) (*bootstrap.SSH, error) {
	p.connMu.Lock()
	t := p.conns[h.Addr()]
	p.connMu.Unlock()
	if t != nil {
		select {
		case <-t.Done():
			p.forget(h.Addr(), t)
		default:
			return t, nil
		}
	}
	t, err := p.dial(ctx, h)
	if err != nil {
		return nil, err
	}
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if prev := p.conns[h.Addr()]; prev != nil {
		t.Close() // another caller won the race
		return prev, nil
	}
	if p.conns == nil {
		p.conns = map[string]*bootstrap.SSH{}
	}
	p.conns[h.Addr()] = t
	return t, nil
}

func (p *Provider) forget(addr string, t *bootstrap.SSH) {
	p.connMu.Lock()
	if p.conns[addr] == t {
		delete(p.conns, addr)
	}
	p.connMu.Unlock()
	t.Close()
}

func (p *Provider) dropConns(held []*allocation) {
	for _, a := range held {
		p.connMu.Lock()
		t := p.conns[a.Host.Addr()]
		p.connMu.Unlock()
		if t != nil {
			p.forget(a.Host.Addr(), t)
		}
	}
}

// Close closes the connections DialContext keeps.
func (p *Provider) Close() error {
	p.connMu.Lock()
	conns := p.conns
	p.conns = nil
	p.connMu.Unlock()
	var errs []error
	for _, t := range conns {
		errs = append(errs, t.Close())
	}
	return errors.Join(errs...)
}
