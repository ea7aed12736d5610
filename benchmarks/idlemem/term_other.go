//go:build !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd && !windows

package main

// isTerminalFD reports false where there is no portable way to tell; the
// progress display is then simply not shown.
func isTerminalFD(uintptr) bool { return false }
