package ssh

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"

	"github.com/sky-coord/sky-coord/bootstrap"
	"github.com/sky-coord/sky-coord/catalog"
	"github.com/sky-coord/sky-coord/providers"
)

// CoordinatorPort is where, on a pool machine's loopback, its agent finds
// the coordinator: a remote forward on the kept SSH connection, so the
// machine needs no route back to the coordinator.
const CoordinatorPort = 46592

// ForwardCoordinator makes coordAddr reachable from the machine of inst at
// 127.0.0.1:CoordinatorPort and returns the URL its agent should use. It
// is idempotent: a tunnel on the live connection is kept; one lost with a
// dead connection is made again.
func (p *Provider) ForwardCoordinator(ctx context.Context, inst providers.Instance, coordAddr string) (string, error) {
	r, err := p.read()
	if err != nil {
		return "", err
	}
	var h *Host
	for _, a := range r.Hosts {
		if a.id() == inst.ID {
			h = &a.Host
			break
		}
	}
	if h == nil {
		return "", fmt.Errorf("instance %s (%s) is not held by the ssh provider: %w", inst.ID, inst.IP, providers.ErrInvalidRequest)
	}
	url := "http://127.0.0.1:" + strconv.Itoa(CoordinatorPort)
	t, err := p.conn(ctx, *h)
	if err != nil {
		return "", err
	}
	key := h.Addr()
	p.connMu.Lock()
	have := p.tunnels[key] == t
	p.connMu.Unlock()
	if have {
		return url, nil
	}
	ln, err := t.Listen(net.JoinHostPort("127.0.0.1", strconv.Itoa(CoordinatorPort)))
	if err != nil {
		return "", err
	}
	p.connMu.Lock()
	if p.tunnels == nil {
		p.tunnels = map[string]*bootstrap.SSH{}
	}
	p.tunnels[key] = t
	p.connMu.Unlock()
	go func() {
		defer func() {
			p.connMu.Lock()
			if p.tunnels[key] == t {
				delete(p.tunnels, key)
			}
			p.connMu.Unlock()
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // the SSH connection closed
			}
			go splice(c, coordAddr)
		}
	}()
	return url, nil
}

// splice joins a forwarded connection to the coordinator.
func splice(c net.Conn, addr string) {
	defer c.Close()
	up, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(up, c)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(c, up)
	_ = c.Close()
	wg.Wait()
}

// Offers lists one offer per pool: machines as they are, at no cost.
// What they have is known only once an agent runs there, so the optimizer
// uses a pool only when a task names it (infra: ssh/POOL).
func (p *Provider) Offers() ([]catalog.Offer, error) {
	pools, err := LoadPools(p.poolsFile())
	if err != nil {
		return nil, err
	}
	var out []catalog.Offer
	for _, name := range pools.Names() {
		out = append(out, catalog.Offer{Cloud: Name, Region: name, InstanceType: "pool", Elastic: true, Unknown: true})
	}
	return out, nil
}

// Check says whether any pool is defined, for `sky-coord check`.
func (p *Provider) Check() (bool, string) {
	pools, err := LoadPools(p.poolsFile())
	if err != nil {
		return false, err.Error()
	}
	names := pools.Names()
	if len(names) == 0 {
		return false, "no pools: list machines in " + p.poolsFile() + " (SkyPilot's ssh_node_pools.yaml format) and use infra: ssh/POOL"
	}
	hosts := 0
	for _, n := range names {
		hosts += len(pools.ByName[n].Hosts)
	}
	return true, fmt.Sprintf("%d pool(s) with %d machine(s): %v (use infra: ssh/POOL)", len(names), hosts, names)
}
