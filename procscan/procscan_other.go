//go:build !linux

package procscan

// WithEnv finds nothing where there is no /proc.
func WithEnv(string) []int { return nil }

// WithEnvPrefix finds nothing where there is no /proc.
func WithEnvPrefix(string) []int { return nil }

// Parent is unknown where there is no /proc.
func Parent(int) int { return 0 }

// Zombie is unknown where there is no /proc.
func Zombie(int) bool { return false }

// Mount is one mount of the mount namespace.
type Mount struct {
	Point, FSType, Options string
}

// Mounts finds nothing where there is no /proc.
func Mounts() ([]Mount, error) { return nil, nil }

// MountPoints finds nothing where there is no /proc.
func MountPoints() ([]string, error) { return nil, nil }
