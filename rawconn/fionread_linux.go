package rawconn

import "golang.org/x/sys/unix"

// queued returns the number of bytes queued for reading on fd.
func queued(fd int) (int, bool) {
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	return n, err == nil
}
