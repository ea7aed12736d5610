//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package rawconn

import "golang.org/x/sys/unix"

// fionread is FIONREAD, _IOR('f', 127, int), from <sys/filio.h>; it has the
// same value on every BSD-derived system. golang.org/x/sys/unix does not
// export it for them.
const fionread = 0x4004667f

// queued returns the number of bytes queued for reading on fd.
func queued(fd int) (int, bool) {
	n, err := unix.IoctlGetInt(fd, fionread)
	return n, err == nil
}
