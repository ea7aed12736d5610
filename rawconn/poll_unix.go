//go:build unix

package rawconn

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// pollIn reports whether fd has something to read (or an error or hang-up
// to report) without consuming it, with poll(2) and a zero timeout. It is
// how a datagram socket, whose datagram a probe read would cut short, is
// checked before the runtime waits.
func pollIn(fd int) (bool, syscall.Errno) {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds[:], 0)
		if err == nil {
			return n > 0, 0
		}
		if err != unix.EINTR {
			return false, errnoOf(err)
		}
	}
}
