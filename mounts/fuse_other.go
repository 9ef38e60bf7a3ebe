//go:build !linux

package mounts

import (
	"context"
	"fmt"
)

func mountFUSE(ctx context.Context, st Store, spec MountSpec, loc Location, prefix string, c *cache) (fuseServer, error) {
	return nil, fmt.Errorf("mount %s at %s in %s mode: %w", loc, spec.Dst, spec.Mode, ErrFUSEUnsupported)
}

// IsMounted reports false: mount points are read from Linux's mountinfo.
func IsMounted(path string) (bool, error) { return false, nil }
