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

// MountPoints finds nothing where there is no /proc.
func MountPoints() ([]string, error) { return nil, nil }
