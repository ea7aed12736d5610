//go:build unix

package rawconn

import (
	"fmt"
	"io"
	"math"
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
	rc syscall.RawConn
	c  syscall.Conn       // the connection, for the addresses or name in errors
	cb func(uintptr) bool // the RawConn callback

	// State of the RawConn.Read in progress, shared with cb.
	p      []byte        // readFD reads into p; waitFD probes into p
	n      int           // bytes the callback read; -1 if it read nothing
	errno  syscall.Errno // the callback's read failed (EAGAIN included)
	wait   bool          // the callback may let the poller wait
	called bool          // the callback has been called in this wait
	woke   bool          // this ReadOnReady waited for the poller
	more   bool          // p is sized by a guess: the callback asks FIONREAD when p fills

	stream bool // SOCK_STREAM socket or a non-socket (pipe): reads may be short
	eof    bool // a zero read is end of stream (everything but datagram and raw sockets)
	ready  bool // bytes are expected right away: read into a pool buffer before waiting

	// known is how many bytes FIONREAD reported after the last read that
	// filled its buffer, minus what has been read since; hint is the size
	// of the buffer a read takes when known is 0.
	known, hint int32
	have        int32 // bytes of the probe not yet handed out
	probe       [probeSize]byte
}

const (
	// minHint and maxHint bound the buffer a read takes when the queued
	// byte count is unknown.
	minHint = probeSize
	maxHint = 1 << 20
	// A buffer of at least shrinkMin bytes that a read filled to a quarter
	// or less is exchanged for one sized to the bytes.
	shrinkMin = 2048
)

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
	r := &Reader{rc: rc, c: c, stream: true, eof: true, hint: 2 * minHint}
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
	// The callback is one closure, so that the runtime calls it with no
	// wrapper frame in between: its frame and the read(2) below it are
	// the deepest part of a wait.
	r.cb = func(fd uintptr) bool {
		if r.wait {
			// Waiting. The first call reads into the probe (a stream)
			// or polls (other sockets, whose datagrams must not be cut);
			// if nothing is there it returns false and the runtime waits
			// for readability, holding no buffer. Every later call
			// follows a wake-up and returns true at once: the read is
			// made in a pool buffer that ReadOnReady takes.
			if r.called {
				r.woke = true
				return true
			}
			r.called = true
			if !r.stream {
				ready, errno := pollIn(int(fd))
				r.errno = errno
				return ready || errno != 0
			}
		}
		// Reading (into the probe while waiting, else into a pool
		// buffer). A read into a pool buffer never lets the runtime
		// wait: EAGAIN is reported, and ReadOnReady puts the buffer back
		// before it waits.
		n, err := readFn(int(fd), r.p)
		for err == syscall.EINTR {
			n, err = readFn(int(fd), r.p)
		}
		if err != nil {
			errno := errnoOf(err)
			if r.wait && (errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK) {
				return false
			}
			r.errno = errno
			return true
		}
		r.n = n
		if n == len(r.p) && r.more {
			// The read filled a buffer smaller than the caller would
			// take: ask how much is still queued (-1: unknown).
			r.known = -1
			if q, ok := queuedFn(int(fd)); ok {
				r.known = int32(min(max(q, 0), math.MaxInt32))
			}
		}
		return true
	}
	return r, nil
}

// ReadOnReady waits until the descriptor is readable, then takes a buffer
// of at most size bytes from pool and reads into it (see the package
// documentation for how the buffer is sized). It holds no pool buffer while
// waiting.
//
// On success it returns the buffer and n > 0; the bytes are (*buf)[:n], and
// the caller owns buf and must Put it back to pool exactly once. If a read
// fails after some bytes have arrived in this call, it returns them with
// the error; otherwise buf is nil with every error and nothing is owed to
// the pool. At the end of a stream, and of a sequenced-packet (unixpacket)
// connection, it returns io.EOF; a zero-length datagram of a datagram or
// raw socket returns (nil, 0, nil).
//
// Errors look like those of the connection's own Read for the same event:
// for the net package's connections a *net.OpError with Op "read" whose Err
// is os.ErrDeadlineExceeded, net.ErrClosed or an *os.SyscallError wrapping
// the errno (e.g. syscall.ECONNRESET); for an *os.File an *os.PathError. It
// returns [ErrInvalidSize] for a size below 1.
//
// The steady-state call allocates nothing.
func (r *Reader) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	// Every pool Get and Put is made in this frame, which is kept small,
	// and never deeper: a Get that allocates (after a garbage collection
	// emptied the pool) runs the runtime's allocator on this goroutine's
	// stack, and that is the deepest path a wake-up takes.
	if size < 1 {
		return nil, 0, ErrInvalidSize
	}
	for {
		want, err := r.await(size)
		if want == 0 && r.have == 0 {
			return nil, 0, err
		}
		// Either the bytes that fit in the probe, or a read into a pool
		// buffer of want bytes (the probe's included).
		buf := pool.Get(max(want, int(r.have)))
		n := 0
		if want == 0 {
			n = r.takeProbe(*buf)
		} else {
			n, err = r.readInto(buf, want, size)
		}
		switch {
		case n < 0:
			// The read would block (a spurious wake-up): wait again,
			// without the buffer.
			pool.Put(buf)
			continue
		case n == 0:
			pool.Put(buf)
			return nil, 0, err
		case want >= shrinkMin && n <= want/4:
			small := pool.Get(n)
			copy(*small, (*buf)[:n])
			pool.Put(buf)
			buf = small
		}
		return buf, n, err
	}
}

// await waits, unless bytes are expected, until the descriptor is
// readable, holding no buffer: the callback reads into the probe once, and
// lets the poller wait if nothing is there. It returns how many bytes to
// read into a pool buffer (the r.have bytes of the probe included), or 0
// when the call ends with the r.have bytes of the probe, or with err
// (io.EOF, the connection's error, or nil for an empty datagram).
func (r *Reader) await(size int) (int, error) {
	r.have, r.woke = 0, false
	if !r.ready {
		r.wait, r.called, r.more, r.n, r.errno = true, false, false, -1, 0
		r.p = r.probe[:min(size, probeSize)]
		err := r.rc.Read(r.cb)
		r.wait = false
		if err != nil {
			r.known = 0
			return 0, r.pollError(err)
		}
		switch n := r.n; {
		case r.errno != 0:
			r.known = 0
			return 0, r.readError()
		case n == 0:
			r.known = 0
			if r.eof {
				return 0, io.EOF
			}
			return 0, nil
		case n > 0:
			// Bytes were there before any wait: expect them next time
			// too.
			r.have, r.ready, r.known = int32(n), true, 0
			r.hint = clampHint(2 * n)
			if n < len(r.p) || n == size {
				// The probe was not filled (the socket is empty now), or
				// the caller takes no more.
				return 0, nil
			}
		}
	}
	// The read takes what FIONREAD reported, or a guess; a guess that
	// the read fills makes the callback ask FIONREAD.
	have := int(r.have)
	switch {
	case !r.stream:
		r.more = false
		return size, nil
	case r.known > 0:
		r.more = false
		return min(size, have+int(r.known)), nil
	}
	want := min(size, max(int(r.hint), 2*have))
	r.more = want < size
	return want, nil
}

// takeProbe copies the r.have bytes of the probe into p and clears them.
//
//go:noinline
func (r *Reader) takeProbe(p []byte) int {
	n := copy(p, r.probe[:r.have])
	clear(r.probe[:r.have])
	r.have = 0
	return n
}

// readInto moves the r.have bytes of the probe to the start of
// (*buf)[:want] and reads into the rest. It returns the bytes there (the
// probe's included), or -1 if the read would block and there are none, and
// updates the read-ahead state. With 0 bytes, err is io.EOF, the
// connection's error, or nil (an empty datagram).
func (r *Reader) readInto(buf *[]byte, want, size int) (int, error) {
	p := (*buf)[:want]
	have := r.takeProbe(p)
	r.p, r.n, r.errno = p[have:], -1, 0
	rerr := r.rc.Read(r.cb)
	r.p = nil
	got, errno := r.n, r.errno
	if rerr != nil || errno != 0 || got == 0 {
		r.ready, r.known = false, 0
		eagain := errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK
		switch {
		case have > 0 && (rerr != nil || eagain || got == 0):
			// The bytes of the probe are returned first; a deadline, a
			// close or the end of the stream comes again on the next
			// call.
			return have, nil
		case rerr != nil:
			return 0, r.pollError(rerr)
		case eagain:
			return -1, nil
		case errno != 0:
			return have, r.readError()
		case r.eof:
			return 0, io.EOF
		}
		return 0, nil // an empty datagram
	}
	n := have + got
	switch {
	case n < want:
		// A short read emptied the socket. Wait first next time if this
		// call had to wait.
		r.ready, r.known = !r.woke, 0
		r.hint = clampHint(2 * n)
	case r.more:
		// A read sized by the guess filled its buffer, and the callback
		// asked FIONREAD what else is queued (-1: unknown).
		switch {
		case r.known < 0:
			r.ready, r.known = true, 0
			r.hint = clampHint(2 * n)
		case r.known > 0:
			r.ready = true
			r.hint = clampHint(n + int(r.known))
		default:
			r.ready = !r.woke
			r.hint = clampHint(2 * n)
		}
	default:
		// The read took all the caller asked for, or all FIONREAD had
		// reported: more may be queued.
		r.ready = true
		r.known = int32(max(int(r.known)-n, 0))
		r.hint = clampHint(max(int(r.hint), n))
	}
	return n, nil
}

func clampHint(n int) int32 { return int32(min(max(n, minHint), maxHint)) }

// The system calls, variables so that tests can inject faults. Reads use
// the syscall package, as the net package does, rather than
// golang.org/x/sys/unix: each package keeps its own race-detector
// synchronisation variable, and mixing them trips the race detector
// (grpc-go found this in its readyreader).
var (
	readFn   = syscall.Read
	queuedFn = queued
)

// errnoOf returns err as an Errno; syscall.Read returns nothing else, and
// a fault injected in a test that is no Errno reads as EIO.
func errnoOf(err error) syscall.Errno {
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EIO
}
