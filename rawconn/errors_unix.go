//go:build unix

package rawconn

import (
	"net"
	"os"
)

// The errors of ReadOnReady look like those of the connection's own Read.
// They are built only once a call has failed, outside the wait path, so
// that nothing here adds to the stack of a parked reader.

// pollError returns an error of the RawConn itself (a deadline, a closed
// connection) as the connection's Read reports the same event: the net
// package's raw-read *net.OpError becomes a "read" one, and an *os.File's
// error an *os.PathError.
//
//go:noinline
func (r *Reader) pollError(err error) error {
	if f, ok := r.c.(*os.File); ok {
		// internal/poll's ErrFileClosing, which os.File.Read reports as
		// os.ErrClosed; it is not exported.
		if err.Error() == "use of closed file" {
			err = os.ErrClosed
		}
		return &os.PathError{Op: "read", Path: f.Name(), Err: err}
	}
	if op, ok := err.(*net.OpError); ok && op.Op == "raw-read" {
		e := *op
		e.Op = "read"
		return &e
	}
	return err
}

// readError returns the failed read(2) of the last callback as the
// connection's Read would: a *net.OpError wrapping an *os.SyscallError for
// the net package's connections, an *os.PathError for an *os.File, and a
// bare *os.SyscallError for anything else.
//
//go:noinline
func (r *Reader) readError() error {
	errno := r.errno
	switch c := r.c.(type) {
	case *os.File:
		return &os.PathError{Op: "read", Path: c.Name(), Err: errno}
	case net.Conn:
		la, ra := c.LocalAddr(), c.RemoteAddr()
		network := ""
		if la != nil {
			network = la.Network()
		}
		return &net.OpError{Op: "read", Net: network, Source: la, Addr: ra, Err: os.NewSyscallError("read", errno)}
	}
	return os.NewSyscallError("read", errno)
}
