//go:build unix

package rawconn

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/readyconn/readyconn/bufferpool"
)

// Reader reads from a socket (or pipe) through its [syscall.RawConn],
// taking a buffer from a pool only once bytes are there to read.
//
// A Reader is not safe for concurrent calls of ReadOnReady: like a
// bufio.Reader it serves one reading goroutine. Closing the underlying
// connection, or setting its read deadline, from another goroutine is safe
// and unblocks a parked ReadOnReady.
type Reader struct {
	rc     syscall.RawConn
	stream bool               // SOCK_STREAM socket or a non-socket (pipe): reads may be short
	eof    bool               // a zero read is end of stream (everything but datagram and raw sockets)
	read   func(uintptr) bool // r.readFD, bound once so ReadOnReady does not allocate

	// State of the call in progress, shared with the callback.
	size int
	pool bufferpool.Pool
	buf  *[]byte
	n    int
	err  error

	// known is how many bytes are known to be still queued: what the
	// last FIONREAD reported minus what has been read since.
	known int
	probe [probeSize]byte
}

// New returns a Reader for c, which must be a connection whose file
// descriptor is in non-blocking mode and registered with the runtime poller,
// as the net package's sockets and pipes from os.Pipe are. It fails if c
// cannot provide a syscall.RawConn.
//
// The Reader reads the raw bytes of the descriptor: never pass a wrapper
// that transforms the stream (a *tls.Conn that exposes its socket, for
// example), or the Reader returns ciphertext.
func New(c syscall.Conn) (*Reader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("rawconn: SyscallConn: %w", err)
	}
	r := &Reader{rc: rc, stream: true, eof: true}
	var soType int
	var soErr error
	if err := rc.Control(func(fd uintptr) {
		soType, soErr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE)
	}); err != nil {
		return nil, fmt.Errorf("rawconn: %w", err)
	}
	// A descriptor that is not a socket (ENOTSOCK, e.g. a pipe) has stream
	// semantics.
	if soErr == nil && soType != syscall.SOCK_STREAM {
		r.stream = false
	}
	// As in the net package, a zero read ends the stream for every socket
	// type but datagram and raw ones: a SOCK_SEQPACKET peer that closed
	// reads as 0 bytes forever.
	if soErr == nil && (soType == syscall.SOCK_DGRAM || soType == syscall.SOCK_RAW) {
		r.eof = false
	}
	r.read = r.readFD
	return r, nil
}

// ReadOnReady waits until the descriptor is readable, then takes a buffer
// of at most size bytes from pool and reads into it (see the package
// documentation for how the buffer is sized). It holds no pool buffer while
// waiting.
//
// On success it returns the buffer and n > 0; the bytes are (*buf)[:n], and
// the caller owns buf and must Put it back to pool exactly once. On every
// other return buf is nil and nothing is owed to the pool. At the end of a
// stream, and of a sequenced-packet (unixpacket) connection, it returns
// io.EOF; a zero-length datagram of a datagram or raw socket returns
// (nil, 0, nil).
// Errors from the runtime poller (deadline, close) are returned as the
// syscall.RawConn reports them, so errors.Is(err, os.ErrDeadlineExceeded) and
// errors.Is(err, net.ErrClosed) work for net sockets; a failed read(2)
// returns an *os.SyscallError wrapping the errno (e.g. syscall.ECONNRESET).
//
// The steady-state call allocates nothing.
func (r *Reader) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if size < 1 {
		return nil, 0, ErrInvalidSize
	}
	r.size, r.pool = size, pool
	err := r.rc.Read(r.read)
	buf, n, rerr := r.buf, r.n, r.err
	r.pool, r.buf, r.n, r.err = nil, nil, 0, nil
	switch {
	case err != nil:
		// The RawConn's own error (deadline, close) wins.
		if buf != nil {
			pool.Put(buf)
		}
		r.known = 0
		return nil, 0, err
	case rerr != nil:
		return nil, 0, rerr // the callback has already put the buffer back
	case n == 0:
		if buf != nil {
			pool.Put(buf)
		}
		if r.eof {
			return nil, 0, io.EOF
		}
		return nil, 0, nil
	}
	return buf, n, nil
}

// readFD is the RawConn callback. It returns false, holding no buffer, when
// the read would block.
func (r *Reader) readFD(fd uintptr) bool {
	ifd := int(fd)
	want := r.size
	measured := false
	if r.stream && r.known < want {
		if q, ok := queued(ifd); ok {
			if q <= 0 {
				return r.probeRead(ifd)
			}
			r.known, measured = q, true
			want = min(q, want)
		}
	}
	buf := r.pool.Get(want)
	p := *buf
	if len(p) > want {
		p = p[:want]
	}
	n, err := sysRead(ifd, p)
	if err != nil {
		r.pool.Put(buf)
		r.known = 0
		if wouldBlock(err) {
			return false
		}
		r.err = os.NewSyscallError("read", err)
		return true
	}
	r.buf, r.n = buf, n
	if measured || r.known >= n {
		r.known = max(r.known-n, 0)
	} else {
		r.known = 0
	}
	return true
}

// probeRead reads into r.probe when FIONREAD reported nothing queued: the
// usual outcome is EAGAIN (park without touching the pool), end of stream,
// or a pending error. Bytes that arrived in the meantime are copied into a
// pool buffer of exactly their length.
func (r *Reader) probeRead(fd int) bool {
	p := r.probe[:min(r.size, len(r.probe))]
	n, err := sysRead(fd, p)
	if err != nil {
		r.known = 0
		if wouldBlock(err) {
			return false
		}
		r.err = os.NewSyscallError("read", err)
		return true
	}
	if n > 0 {
		buf := r.pool.Get(n)
		copy(*buf, p[:n])
		clear(p[:n])
		r.buf = buf
	}
	r.n = n
	r.known = 0
	return true
}

// sysRead reads with the syscall package, as the net package does, rather
// than golang.org/x/sys/unix: each package keeps its own race-detector
// synchronisation variable, and mixing them trips the race detector (grpc-go
// found this in its readyreader). EINTR is retried.
func sysRead(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

func wouldBlock(err error) bool {
	return err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}
