// Package rawconn holds the operating-system mechanics of readyconn: it waits
// for a socket to become readable without holding a buffer, and only then
// takes one from a pool.
//
// On Unix (Linux, macOS, the BSDs, Solaris, AIX) a [Reader] reads through
// [syscall.RawConn.Read]. Before it waits, its callback reads into a
// 64-byte array inside the Reader (the probe); when nothing is there the
// callback returns false and the Go runtime parks the goroutine in the
// network poller, owning no buffer at all. Once the poller reports the
// socket readable, ReadOnReady takes a buffer from the pool and reads into
// it with a non-blocking read(2). Deadlines and Close work as they do for
// net.Conn.Read, because the runtime's poller is the one doing the waiting,
// and errors look like net.Conn.Read's for the same event.
//
// # Cost of a wake-up
//
// A reader in lock-step with its peer (one request, one response) pays
// what a bufio.Reader pays: one read(2) that finds nothing before it parks
// and one that reads the message after the wake-up, and no ioctl. A reader
// whose bytes were already there when it called (it keeps pace with a
// stream) reads straight into a pool buffer, one read(2) per call; it
// learns which case it is in from the previous call. Two shortcuts are not
// taken, because they are wrong or cost the memory this package saves:
//
//   - Skipping the read before parking after a short read (the socket was
//     empty then, so bytes queued now arrived later and "the poller must
//     have an event for them"). The runtime clears the pending readiness of
//     a descriptor at the start of every RawConn.Read (internal/poll's
//     prepareRead): an event the poller collected between two calls would
//     be lost, and the reader would park with bytes queued.
//   - Taking the pool buffer inside the callback, which runs three frames
//     deeper than ReadOnReady. A Get that allocates (after a garbage
//     collection emptied a sync.Pool) runs the runtime's allocator on the
//     reader's stack; that deeper it pushes a reader past the 2 KiB stack
//     class, which a parked goroutine keeps for as long as it is idle. Every
//     Get and Put is made in ReadOnReady's own frame, between two
//     RawConn.Read calls.
//
// # Sizing policy
//
// The caller's size is an upper bound, not the size of every buffer. A
// stream socket's read is sized as follows:
//
//   - A read into a pool buffer takes twice the bytes the previous call
//     returned (at least 64), capped by size.
//   - A read that fills such a buffer, when the caller would have taken
//     more, asks FIONREAD how much is still queued; the next call reads
//     exactly that (up to size) without waiting.
//   - Bytes that were there before any wait and fit in the probe are
//     copied into a pool buffer of exactly their length.
//   - A buffer of 2 KiB or more that a read filled to a quarter or less is
//     exchanged for one sized to the bytes, so a 100-byte message never
//     holds more than a few hundred bytes, whatever came before it.
//
// Datagram and sequenced-packet sockets are read with the full size, since a
// short read would truncate a datagram, and wait with poll(2) rather than a
// probe read. Where FIONREAD is not known (Solaris, illumos, AIX) a read
// that fills its buffer doubles the next one.
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
// readyreader.ErrInvalidSize is the same value, returned by every
// readyreader.Reader of this module.
var ErrInvalidSize = errors.New("readyconn: ReadOnReady size must be at least 1")

// probeSize is the size of the array inside each Reader that receives the
// read made before waiting.
const probeSize = 64
