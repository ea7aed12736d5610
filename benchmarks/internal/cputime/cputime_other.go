//go:build !unix && !windows

package cputime

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
