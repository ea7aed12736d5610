//go:build unix

package main

import "syscall"

// raiseOpenFileLimit raises the soft RLIMIT_NOFILE to the hard limit and
// returns the soft limit in effect afterwards.
func raiseOpenFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = want.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			// macOS refuses values above kern.maxfilesperproc (e.g. an
			// unlimited hard limit); OPEN_MAX is always accepted.
			want.Cur = min(lim.Max, 10240)
			if want.Cur > lim.Cur {
				_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
			}
		}
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return uint64(lim.Cur), nil
}
