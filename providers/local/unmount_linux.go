package local

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/sky-coord/sky-coord/procscan"
)

// unmountUnder detaches every mount at or below dir, deepest first: the
// nodes' copy-on-write views of shared trees, and whatever a killed node
// left mounted (a bucket whose mounter died). Removing the directories
// would otherwise stop at them, or reach through them.
func unmountUnder(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	points, err := procscan.MountPoints()
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	var under []string
	for _, p := range points {
		if p == abs || strings.HasPrefix(p, abs+string(filepath.Separator)) {
			under = append(under, p)
		}
	}
	slices.SortFunc(under, func(a, b string) int { return len(b) - len(a) })
	for _, p := range under {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT && err != syscall.EPERM {
			return fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	return nil
}
