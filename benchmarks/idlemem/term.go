package main

import (
	"errors"
	"os"
)

// errNoLimit reports that the system has no per-process open-file limit to
// check.
var errNoLimit = errors.New("no open-file limit on this system")

// isTerminal reports whether f is a terminal; the progress display is shown
// only then.
func isTerminal(f *os.File) bool { return isTerminalFD(f.Fd()) }
