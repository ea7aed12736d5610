// Package readyreader defines Reader, the interface through which every
// layer of readyconn reads without pinning a buffer while it waits, and the
// constructors that turn an io.Reader into one.
//
// A plain io.Reader must be handed its buffer before it blocks, so a
// goroutine waiting for a silent peer owns that buffer for as long as the
// peer stays silent. A Reader inverts the order: ReadOnReady waits until
// bytes are there, then takes a buffer from a [bufferpool.Pool], reads, and
// hands the buffer to the caller, who puts it back when the bytes are
// consumed. [NewNonBlocking] builds such a Reader for the net package's bare
// sockets on Unix (through package rawconn); [New] falls back to a blocking
// Reader everywhere else; [NewBuffered] adds a [Buffered] on top: a
// bufio.Reader, with the same methods and semantics (io.RuneScanner,
// ReadSlice and ReadLine, io.WriterTo for io.Copy), that returns its buffer
// to the pool whenever it runs empty.
//
// Errors are those of the connection: a rawconn Reader's look like
// net.Conn.Read's for the same event, and the blocking Reader passes the
// io.Reader's on. Every Reader of this module returns [ErrInvalidSize] for a
// size below 1.
package readyreader

import (
	"errors"
	"io"
	"net"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/rawconn"
)

// Reader reads into a buffer that it takes from a pool only once data is
// there to read.
type Reader interface {
	// ReadOnReady waits until data can be read, then takes a buffer of
	// size bytes from pool and reads into it. It holds no buffer while
	// waiting. The caller owns the returned buffer (nil when n == 0) and
	// must Put it back to pool. n > 0 bytes must be processed before err is
	// considered.
	//
	// The bytes read are (*buf)[:n]; len(*buf) may be smaller than size
	// when the implementation sizes the buffer to the data that arrived.
	// Implementations may take further buffers from pool while they work
	// but return every one except buf before returning.
	ReadOnReady(size int, pool bufferpool.Pool) (buf *[]byte, n int, err error)
}

// ErrInvalidSize is returned by ReadOnReady of every Reader of this module
// (those this package builds, [Buffered.ReadOnReady], and the connections
// of the packages above) for a size below 1. It is rawconn.ErrInvalidSize.
var ErrInvalidSize = rawconn.ErrInvalidSize

// errInvalidCount is returned when an io.Reader reports a count outside
// [0, len(p)].
var errInvalidCount = errors.New("readyreader: underlying Reader returned an invalid count")

// maxConsecutiveEmptyReads is how many times in a row an io.Reader may
// return (0, nil) before a read fails with io.ErrNoProgress, as in bufio.
const maxConsecutiveEmptyReads = 100

// NewNonBlocking returns a Reader for r that holds no buffer while it waits,
// or nil if there is none:
//
//   - if r already implements Reader, r itself;
//   - on Unix, for a bare *net.TCPConn, *net.UnixConn, *net.UDPConn or
//     *net.IPConn, a Reader built with rawconn.New;
//   - nil for everything else.
//
// Only the bare socket types qualify: a type that embeds a socket and
// exposes its SyscallConn (a *tls.Conn's socket, a credentials wrapper) must
// not be read raw, because the bytes on the socket are not the bytes the
// wrapper's Read returns.
//
// The returned Reader reads the same stream as r; do not mix calls of r.Read
// with calls of ReadOnReady from different goroutines.
func NewNonBlocking(r io.Reader) Reader {
	if rr, ok := r.(Reader); ok {
		return rr
	}
	var rr *rawconn.Reader
	var err error
	switch c := r.(type) {
	case *net.TCPConn:
		rr, err = rawconn.New(c)
	case *net.UnixConn:
		rr, err = rawconn.New(c)
	case *net.UDPConn:
		rr, err = rawconn.New(c)
	case *net.IPConn:
		rr, err = rawconn.New(c)
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	return rr
}

// New returns [NewNonBlocking](r) if that is not nil, and otherwise a
// blocking Reader whose ReadOnReady takes a buffer of size bytes from the
// pool, calls r.Read with it and puts it back if no bytes were read. The
// blocking Reader pins that buffer for as long as r.Read blocks: it keeps
// the Reader contract, not its memory promise. A Read that returns (0, nil)
// is retried with the same buffer; after 100 such reads in a row ReadOnReady
// fails with io.ErrNoProgress.
func New(r io.Reader) Reader {
	if rr := NewNonBlocking(r); rr != nil {
		return rr
	}
	return &blocking{r: r}
}

type blocking struct{ r io.Reader }

func (b *blocking) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if size < 1 {
		return nil, 0, ErrInvalidSize
	}
	buf := pool.Get(size)
	p := *buf
	if len(p) > size {
		p = p[:size]
	}
	for range maxConsecutiveEmptyReads {
		n, err := b.r.Read(p)
		switch {
		case n < 0 || n > len(p):
			pool.Put(buf)
			return nil, 0, errInvalidCount
		case n > 0:
			return buf, n, err
		case err != nil:
			pool.Put(buf)
			return nil, 0, err
		}
	}
	pool.Put(buf)
	return nil, 0, io.ErrNoProgress
}
