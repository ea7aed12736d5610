package readyreader

import (
	"bufio"
	"io"

	"github.com/readyconn/readyconn/bufferpool"
)

// DefaultBufferedSize is the read size of a [Buffered] created with a size
// below 1.
const DefaultBufferedSize = 4096

// Buffered is a bufio.Reader-like reader on top of a [Reader] that owns a
// pool buffer only while it holds unread bytes.
//
// Each fill asks the underlying Reader for up to size bytes, so on a
// non-blocking Reader it waits with no buffer and then holds a buffer sized
// to what arrived. The moment its last buffered byte is consumed, the
// buffer goes back to the pool. Reads of at least size bytes into an empty
// Buffered go straight into the caller's slice. Peek(n) for more bytes than
// one read returned gathers them into a buffer that grows towards n bytes;
// while it waits for the rest it holds about twice what has arrived.
//
// Errors behave as in bufio.Reader: an error from the underlying Reader is
// returned after the bytes read before it have been consumed, once; the next
// call reads from the underlying Reader again (so a read that timed out can
// be retried after the deadline is moved).
//
// A Buffered is not safe for concurrent use. Call [Buffered.Reset] to give
// back a buffer still holding unread bytes when the Buffered is abandoned.
type Buffered struct {
	rd   Reader
	pool bufferpool.Pool
	size int
	buf  *[]byte // from pool; nil whenever no bytes are buffered
	r, w int     // unread bytes are (*buf)[r:w]
	err  error
	lent lendPool
}

// NewBuffered returns a Buffered reading from rd that takes its buffers from
// pool (bufferpool.Default() if nil) and asks rd for up to size bytes per
// read (DefaultBufferedSize if size < 1). If rd is already a *Buffered with
// the same size and pool, NewBuffered returns it.
func NewBuffered(rd Reader, size int, pool bufferpool.Pool) *Buffered {
	if size < 1 {
		size = DefaultBufferedSize
	}
	if pool == nil {
		pool = bufferpool.Default()
	}
	if b, ok := rd.(*Buffered); ok && b.size == size && samePool(b.pool, pool) {
		return b
	}
	return &Buffered{rd: rd, pool: pool, size: size}
}

// samePool compares pools without panicking on incomparable dynamic types.
func samePool(a, b bufferpool.Pool) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// Size returns the read size given to NewBuffered.
func (b *Buffered) Size() int { return b.size }

// Buffered returns the number of bytes that can be read without waiting.
func (b *Buffered) Buffered() int { return b.w - b.r }

// Reset discards any buffered bytes and pending error, returns the buffer to
// the pool, and makes b read from rd.
func (b *Buffered) Reset(rd Reader) {
	b.release()
	b.rd = rd
	b.err = nil
}

func (b *Buffered) release() {
	if b.buf != nil {
		b.pool.Put(b.buf)
	}
	b.buf, b.r, b.w = nil, 0, 0
}

func (b *Buffered) releaseIfEmpty() {
	if b.r == b.w {
		b.release()
	}
}

func (b *Buffered) readErr() error {
	err := b.err
	b.err = nil
	return err
}

// fill reads into a new buffer of up to size bytes. It requires b.buf == nil
// and b.err == nil, and leaves either bytes buffered or b.err set (or both).
func (b *Buffered) fill(size int) {
	for range maxConsecutiveEmptyReads {
		buf, n, err := b.rd.ReadOnReady(size, b.pool)
		if n != 0 && (n < 0 || buf == nil || n > len(*buf)) {
			if buf != nil {
				b.pool.Put(buf)
			}
			b.err = errInvalidCount
			return
		}
		if n > 0 {
			b.buf, b.r, b.w, b.err = buf, 0, n, err
			return
		}
		if buf != nil {
			b.pool.Put(buf)
		}
		if err != nil {
			b.err = err
			return
		}
	}
	b.err = io.ErrNoProgress
}

// Read reads up to len(p) bytes into p. If bytes are buffered it copies
// them; otherwise it waits for one read of the underlying Reader (into p
// itself when len(p) >= Size()). It returns 0 only with an error, or when
// len(p) == 0.
func (b *Buffered) Read(p []byte) (int, error) {
	if len(p) == 0 {
		if b.Buffered() > 0 {
			return 0, nil
		}
		return 0, b.readErr()
	}
	if b.buf == nil {
		if b.err != nil {
			return 0, b.readErr()
		}
		if len(p) >= b.size {
			n := b.readDirect(p)
			if b.buf != nil {
				return n, nil // the rest of an oversized read is buffered
			}
			return n, b.readErr()
		}
		b.fill(b.size)
		if b.buf == nil {
			return 0, b.readErr()
		}
	}
	n := copy(p, (*b.buf)[b.r:b.w])
	b.r += n
	b.releaseIfEmpty()
	return n, nil
}

// readDirect reads into p by lending p to the underlying Reader as its
// pool. It sets b.err, and buffers any bytes that did not fit in p (only
// possible when the Reader took a larger buffer from the real pool).
func (b *Buffered) readDirect(p []byte) int {
	for range maxConsecutiveEmptyReads {
		b.lent = lendPool{p: p, next: b.pool}
		buf, n, err := b.rd.ReadOnReady(len(p), &b.lent)
		lent := buf != nil && buf == &b.lent.slot
		bad := n != 0 && (n < 0 || buf == nil || n > len(*buf))
		b.lent = lendPool{} // drop the reference to p
		switch {
		case bad:
			if buf != nil && !lent {
				b.pool.Put(buf)
			}
			b.err = errInvalidCount
			return 0
		case n > 0 && lent:
			b.err = err
			return n
		case n > 0:
			c := copy(p, (*buf)[:n])
			if c < n {
				b.buf, b.r, b.w = buf, c, n
			} else {
				b.pool.Put(buf)
			}
			b.err = err
			return c
		}
		if buf != nil && !lent {
			b.pool.Put(buf)
		}
		if err != nil {
			b.err = err
			return 0
		}
	}
	b.err = io.ErrNoProgress
	return 0
}

// ReadByte reads and returns one byte, waiting for a read of the underlying
// Reader if none is buffered.
func (b *Buffered) ReadByte() (byte, error) {
	if b.buf == nil {
		if b.err != nil {
			return 0, b.readErr()
		}
		b.fill(b.size)
		if b.buf == nil {
			return 0, b.readErr()
		}
	}
	c := (*b.buf)[b.r]
	b.r++
	b.releaseIfEmpty()
	return c, nil
}

// Peek returns the next n bytes without consuming them, reading from the
// underlying Reader until n bytes are buffered or it fails. The slice is
// valid until the next call of a method of b. If fewer than n bytes are
// returned, the error explains why (io.EOF if the stream ended).
//
// When n is more than the buffered bytes, Peek gathers reads into a pool
// buffer that grows geometrically up to n bytes: while it waits for the
// rest it holds about twice the bytes that have arrived (at least 64, at
// most n). It may take memory proportional to n: callers must bound n, for
// example by a maximum frame size, before calling Peek. Peek returns
// bufio.ErrNegativeCount for n < 0.
func (b *Buffered) Peek(n int) ([]byte, error) {
	if n < 0 {
		return nil, bufio.ErrNegativeCount
	}
	for b.w-b.r < n && b.err == nil {
		if b.buf == nil {
			b.fill(max(n, b.size))
			continue
		}
		b.makeRoom(n)
		b.gather()
	}
	if avail := b.w - b.r; avail < n {
		if b.buf == nil {
			return nil, b.readErr()
		}
		return (*b.buf)[b.r:b.w], b.readErr()
	}
	if b.buf == nil {
		return nil, nil // n == 0: as bufio, no error, a pending one stays
	}
	return (*b.buf)[b.r : b.r+n], nil
}

// minGather is the smallest buffer Peek gathers into.
const minGather = 64

// makeRoom prepares b.buf for a gathering read towards n buffered bytes. The
// buffer it leaves has room for target = min(n, max(2*buffered, 64)) bytes
// from b.r on, and is at most 4*target long: it holds at most about twice
// what has arrived (never more than n) while Peek waits, and grows
// geometrically, so gathering n bytes copies O(n) bytes in total.
func (b *Buffered) makeRoom(n int) {
	buf := *b.buf
	buffered := b.w - b.r
	target := min(n, max(2*buffered, minGather))
	switch {
	case len(buf) < target || len(buf) > 4*target:
		nb := b.pool.Get(target)
		b.w = copy(*nb, buf[b.r:b.w])
		b.r = 0
		b.pool.Put(b.buf)
		b.buf = nb
	case len(buf)-b.r < target:
		b.w = copy(buf, buf[b.r:b.w])
		b.r = 0
	}
}

// gather performs one read of the underlying Reader into the free tail of
// b.buf.
func (b *Buffered) gather() {
	for range maxConsecutiveEmptyReads {
		tail := (*b.buf)[b.w:]
		b.lent = lendPool{p: tail, next: b.pool}
		buf, n, err := b.rd.ReadOnReady(len(tail), &b.lent)
		lent := buf != nil && buf == &b.lent.slot
		bad := n != 0 && (n < 0 || buf == nil || n > len(*buf))
		b.lent = lendPool{}
		switch {
		case bad:
			if buf != nil && !lent {
				b.pool.Put(buf)
			}
			b.err = errInvalidCount
			return
		case n > 0 && lent:
			b.w += n
			b.err = err
			return
		case n > 0:
			// The Reader used a buffer of its own choosing: append it.
			if len(*b.buf)-b.w < n {
				nb := b.pool.Get(b.w - b.r + n)
				b.w = copy(*nb, (*b.buf)[b.r:b.w])
				b.r = 0
				b.pool.Put(b.buf)
				b.buf = nb
			}
			b.w += copy((*b.buf)[b.w:], (*buf)[:n])
			b.pool.Put(buf)
			b.err = err
			return
		}
		if buf != nil && !lent {
			b.pool.Put(buf)
		}
		if err != nil {
			b.err = err
			return
		}
	}
	b.err = io.ErrNoProgress
}

// Discard skips the next n bytes and returns how many it skipped; fewer
// than n only with an error. Returns bufio.ErrNegativeCount for n < 0.
func (b *Buffered) Discard(n int) (int, error) {
	if n < 0 {
		return 0, bufio.ErrNegativeCount
	}
	remain := n
	for remain > 0 {
		if b.buf == nil {
			if b.err != nil {
				return n - remain, b.readErr()
			}
			b.fill(b.size)
			continue
		}
		skip := min(remain, b.w-b.r)
		b.r += skip
		remain -= skip
		b.releaseIfEmpty()
	}
	return n, nil
}

// ReadOnReady makes a Buffered a [Reader] itself, so layers can stack. If
// bytes are buffered it copies up to size of them into a buffer from pool
// and returns it at once; otherwise it returns the underlying Reader's
// ReadOnReady(size, pool) (after any pending error), which holds no buffer
// while waiting if the underlying Reader does not. The caller owns the
// returned buffer as the Reader contract says.
func (b *Buffered) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if size < 1 {
		return nil, 0, ErrInvalidSize
	}
	if b.buf == nil {
		if b.err != nil {
			return nil, 0, b.readErr()
		}
		return b.rd.ReadOnReady(size, pool)
	}
	n := min(size, b.w-b.r)
	buf := pool.Get(n)
	copy(*buf, (*b.buf)[b.r:b.r+n])
	b.r += n
	b.releaseIfEmpty()
	return buf, n, nil
}

// lendPool hands the underlying Reader a slice owned by the Buffered (the
// caller's p, or the free tail of the Buffered's buffer) as its first Get,
// so the bytes land where they are wanted without a copy. Any further Get,
// or one larger than the slice, goes to the real pool.
type lendPool struct {
	p    []byte
	slot []byte // the slice handed out; &slot identifies it on Put
	out  bool
	next bufferpool.Pool
}

func (l *lendPool) Get(n int) *[]byte {
	if !l.out && n <= len(l.p) {
		l.out = true
		l.slot = l.p[:n]
		return &l.slot
	}
	return l.next.Get(n)
}

func (l *lendPool) Put(b *[]byte) {
	if b == &l.slot {
		l.out = false
		l.slot = nil
		return
	}
	l.next.Put(b)
}
