//go:build !linux

package local

import "context"

// killMarked cannot find processes by environment outside Linux; the
// agent's own shutdown is all there is.
func killMarked(context.Context, string) error { return nil }

func killMarkedNow(context.Context, string) error { return nil }
