//go:build !linux

package agent

import "errors"

func canMountOverlay() bool { return false }

func mountOverlay(lower, upper, work, dest string) error {
	return errors.New("overlay mounts are Linux's")
}

func isMountPoint(string) bool { return false }

func isViewMount(dest, lower, upper string) bool { return false }

func mountStamp(string) (mountID, bool) { return mountID{}, false }

func hidesLower(string) bool { return true }

func lockFile(string) (func(), error) { return func() {}, nil }
