//go:build !unix

package main

// raiseOpenFileLimit reports errNoLimit: this system has no RLIMIT_NOFILE
// (Windows limits sockets by memory, not by a per-process count).
func raiseOpenFileLimit() (uint64, error) { return 0, errNoLimit }
