//go:build !linux

package fswatch

import (
	"fmt"
	"runtime"
)

// readBufferSize is unused where there is no notifier.
const readBufferSize = 0

func newNotifier() (notifier, error) {
	return nil, fmt.Errorf("%w: file change notification is implemented on linux only, not %s", errNoNotifier, runtime.GOOS)
}
