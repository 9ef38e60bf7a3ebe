//go:build !linux

package hosts

import "testing"

// GatewayAddr is the bridge address namespace hosts reach the test
// process at (Linux only).
const GatewayAddr = "10.87.255.254"

// New skips the test: namespace hosts need Linux.
func New(t testing.TB, n int) []*Host {
	t.Skip("namespace test hosts need Linux network namespaces")
	return nil
}
