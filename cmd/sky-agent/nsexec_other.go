//go:build !linux

package main

import "errors"

func nsexec([]string) error {
	return errors.New("__nsexec: mount namespaces are Linux's")
}
