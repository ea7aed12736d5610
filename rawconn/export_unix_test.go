//go:build unix

package rawconn

// SetSyscalls replaces the read(2) and FIONREAD calls of every Reader for
// a test, and returns the function that restores them. A nil argument keeps
// the real call. Tests that use it must not run in parallel.
func SetSyscalls(read func(fd int, p []byte) (int, error), queued func(fd int) (int, bool)) (restore func()) {
	oldRead, oldQueued := readFn, queuedFn
	if read != nil {
		readFn = read
	}
	if queued != nil {
		queuedFn = queued
	}
	return func() { readFn, queuedFn = oldRead, oldQueued }
}

// Queued is the real FIONREAD.
func Queued(fd int) (int, bool) { return queued(fd) }

// ProbeSize is the size of the probe a Reader reads into before it waits.
const ProbeSize = probeSize
