// Package rawconn holds the operating-system mechanics of readyconn: it waits
// for a socket to become readable without holding a buffer, and only then
// takes one from a pool.
//
// On Unix (Linux, macOS, the BSDs, Solaris, AIX) a [Reader] reads through
// [syscall.RawConn.Read]. Its callback asks the kernel how many bytes are
// queued (FIONREAD), takes a buffer of that size from the pool, and reads
// with a non-blocking read(2). When nothing is there the callback returns
// false and the Go runtime parks the goroutine in the network poller, owning
// no buffer at all. Deadlines and Close work as they do for net.Conn.Read,
// because the runtime's poller is the one doing the waiting.
//
// # Sizing policy
//
// The caller's size is an upper bound, not the size of every buffer. A
// stream socket's read is sized as follows:
//
//   - FIONREAD reports the queued bytes q, and the read takes min(q, size)
//     bytes from the pool, rounded up by the pool to its class (a 100-byte
//     message takes a 112-byte buffer from the default pool).
//   - While an earlier FIONREAD showed that at least size bytes are still
//     queued, reads take size bytes without asking again, so a reader far
//     behind a bulk sender pays one extra system call per q bytes, not per
//     read.
//   - If q == 0 (nothing queued, or end of stream or an error pending), the
//     read goes into a 64-byte array inside the Reader. If that read would
//     block the goroutine parks without having touched the pool; if it
//     returns bytes (they arrived in between) they are copied into a pool
//     buffer of exactly that length.
//
// Datagram and sequenced-packet sockets are read with the full size, since a
// short read would truncate a datagram. Where FIONREAD is not known
// (Solaris, illumos, AIX) reads take the full size.
//
// Elsewhere (Windows, Plan 9, js and wasip1) [New] returns an error wrapping
// [errors.ErrUnsupported]; callers fall back to blocking reads (see package
// readyreader).
package rawconn

import (
	"errors"
	"fmt"
)

// ErrUnsupported is returned (wrapped) by [New] on platforms without a
// RawConn read path. errors.Is(err, errors.ErrUnsupported) reports true for it.
var ErrUnsupported = fmt.Errorf("rawconn: RawConn reads not supported on this platform: %w", errors.ErrUnsupported)

// ErrInvalidSize is returned by [Reader.ReadOnReady] for a size below 1.
var ErrInvalidSize = errors.New("rawconn: ReadOnReady size must be at least 1")

// probeSize is the size of the array inside each Reader that receives the
// read of a wake-up on which FIONREAD reported nothing queued.
const probeSize = 64
