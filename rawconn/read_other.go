//go:build !unix

package rawconn

import (
	"syscall"

	"github.com/readyconn/readyconn/bufferpool"
)

// Reader reads from a connection through its syscall.RawConn. On this
// platform there is no RawConn read path and no Reader can be created.
type Reader struct{}

// New returns an error wrapping [ErrUnsupported] (and thus
// [errors.ErrUnsupported]) on this platform.
func New(c syscall.Conn) (*Reader, error) {
	return nil, ErrUnsupported
}

// ReadOnReady returns [ErrUnsupported] on this platform.
func (r *Reader) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	return nil, 0, ErrUnsupported
}
