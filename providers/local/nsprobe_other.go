//go:build !linux

package local

// privateMountsSupported: mount namespaces are Linux's.
func privateMountsSupported() bool { return false }

func mountpointCreatable(string) error { return nil }
