package readyreader

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"unicode/utf8"

	"github.com/readyconn/readyconn/bufferpool"
)

// DefaultBufferedSize is the read size of a [Buffered] created with a size
// below 1.
const DefaultBufferedSize = 4096

// Buffered is a bufio.Reader on top of a [Reader] that owns a pool buffer
// only while it holds unread bytes.
//
// Each fill asks the underlying Reader for up to size bytes, so on a
// non-blocking Reader it waits with no buffer and then holds a buffer sized
// to what arrived. The moment its last buffered byte is consumed, the
// buffer goes back to the pool. Reads of at least size bytes into an empty
// Buffered go straight into the caller's slice.
//
// It has bufio.Reader's methods with bufio.Reader's semantics, and these
// differences, the first four about memory:
//
//   - Peek(n) may ask for more than Size() bytes: it gathers reads into a
//     buffer that grows with what arrives (never taking n bytes before they
//     are there), so it never returns bufio.ErrBufferFull.
//   - A slice returned by Peek, ReadSlice or ReadLine is valid until the
//     next call of a method of the Buffered; if the call consumed the last
//     buffered bytes, the buffer goes back to the pool at the start of that
//     next call rather than at once.
//   - UnreadByte and UnreadRune work after the buffer went back to the
//     pool: they take a small one for the unread bytes.
//   - WriteTo never hands the underlying connection to the writer's
//     ReadFrom (which would wait in a read holding a buffer): it writes each
//     buffer as it arrives.
//   - Read retries an underlying read that returns nothing and no error
//     (up to 100 times, then io.ErrNoProgress) rather than returning
//     (0, nil); a Reader that reports an impossible count gets an error, not
//     a panic; and sizes below 16 bytes are kept (bufio raises them to 16).
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
	buf  *[]byte // from pool; nil when no bytes are buffered and no slice is out
	r, w int     // unread bytes are (*buf)[r:w]
	err  error

	// slot is the slice lent to rd as the first buffer it takes from the
	// pool during one read (see lender).
	slot    []byte
	slotOut bool

	// lastByte (-1 for none) and lastRune/lastRuneSize (-1 for none)
	// are what UnreadByte and UnreadRune put back.
	lastRuneSize int8
	lastByte     int16
	lastRune     rune
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
	return &Buffered{rd: rd, pool: pool, size: size, lastByte: -1, lastRuneSize: -1}
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
// the pool, and makes b read from rd. On a zero Buffered it sets the
// defaults of NewBuffered(rd, 0, nil).
func (b *Buffered) Reset(rd Reader) {
	if b.size < 1 {
		b.size = DefaultBufferedSize
	}
	if b.pool == nil {
		b.pool = bufferpool.Default()
	}
	b.release()
	b.rd = rd
	b.err = nil
	b.lastByte, b.lastRuneSize = -1, -1
}

func (b *Buffered) release() {
	if b.buf != nil {
		b.pool.Put(b.buf)
	}
	b.buf, b.r, b.w = nil, 0, 0
}

// releaseIfEmpty gives the buffer back once its bytes are consumed. Every
// method calls it first, for the buffer kept behind a slice that Peek,
// ReadSlice or ReadLine returned, and the methods that copy bytes out call
// it last. It is inlined, so that the Put (which may allocate, deep in the
// runtime) runs in the frame of the method.
func (b *Buffered) releaseIfEmpty() {
	if b.r == b.w && b.buf != nil {
		b.pool.Put(b.buf)
		b.buf = nil // r == w stays: nothing is buffered
	}
}

func (b *Buffered) readErr() error {
	err := b.err
	b.err = nil
	return err
}

// fill reads into a new buffer of up to size bytes. It requires b.buf == nil
// and b.err == nil, and leaves either bytes buffered or b.err set (or both).
// As in bufio, whose fill moves the buffered bytes to the start, a rune
// read before a fill cannot be unread after it.
func (b *Buffered) fill(size int) {
	b.lastRuneSize = -1
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
	b.releaseIfEmpty()
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
			if n > 0 {
				b.lastByte, b.lastRuneSize = int16(p[n-1]), -1
			}
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
	b.lastByte, b.lastRuneSize = int16(p[n-1]), -1
	b.releaseIfEmpty()
	return n, nil
}

// readDirect reads into p by lending p to the underlying Reader as the
// first buffer it takes from the pool. It sets b.err, and buffers any bytes
// that did not fit in p (only possible when the Reader took a larger buffer
// from the real pool).
func (b *Buffered) readDirect(p []byte) int {
	for range maxConsecutiveEmptyReads {
		buf, n, err, lent := b.readLent(p)
		switch {
		case n < 0:
			if buf != nil {
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
		if buf != nil {
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

// readLent calls ReadOnReady(len(p)) with p lent as the first buffer it
// takes from the pool. If the Reader returned p (lent), buf is nil and the
// n bytes are in p; otherwise buf is the Reader's buffer. n is -1 if the
// Reader reported a count its buffer cannot hold.
func (b *Buffered) readLent(p []byte) (buf *[]byte, n int, err error, lent bool) {
	b.slot, b.slotOut = p, false
	buf, n, err = b.rd.ReadOnReady(len(p), (*lender)(b))
	if buf != nil && buf == &b.slot {
		lent, buf = true, nil
		if n > len(b.slot) {
			n = -1
		}
	} else if n != 0 && (buf == nil || n > len(*buf)) {
		n = -1
	}
	b.slot, b.slotOut = nil, false // drop the reference to p
	return buf, n, err, lent
}

// ReadByte reads and returns one byte, waiting for a read of the underlying
// Reader if none is buffered.
func (b *Buffered) ReadByte() (byte, error) {
	b.releaseIfEmpty()
	b.lastRuneSize = -1
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
	b.lastByte, b.lastRuneSize = int16(c), -1
	b.releaseIfEmpty()
	return c, nil
}

// UnreadByte unreads the last byte. Only the most recently read byte can be
// unread; it returns bufio.ErrInvalidUnreadByte if the last call was not a
// read (Peek, Discard, WriteTo and ReadOnReady are not).
func (b *Buffered) UnreadByte() error {
	if b.lastByte < 0 || b.buf != nil && b.r == 0 && b.w > 0 {
		b.releaseIfEmpty()
		return bufio.ErrInvalidUnreadByte
	}
	c := [1]byte{byte(b.lastByte)}
	b.lastByte, b.lastRuneSize = -1, -1
	if b.buf != nil { // then b.r > 0
		b.r--
		(*b.buf)[b.r] = c[0]
		return nil
	}
	b.unread(c[:])
	return nil
}

// ReadRune reads one UTF-8 encoded character and returns it and its size
// in bytes. An invalid encoding consumes one byte and returns
// (utf8.RuneError, 1).
func (b *Buffered) ReadRune() (r rune, size int, err error) {
	b.releaseIfEmpty()
	for b.w-b.r < utf8.UTFMax && b.err == nil && (b.buf == nil || !utf8.FullRune((*b.buf)[b.r:b.w])) &&
		b.w-b.r < max(b.size, utf8.UTFMax) {
		if b.buf == nil {
			b.fill(b.size)
		} else {
			b.makeRoom(b.size) // room for at least 64 bytes, not just the rune
			b.gather()
		}
	}
	b.lastRuneSize = -1
	if b.r == b.w {
		return 0, 0, b.readErr()
	}
	r, size = rune((*b.buf)[b.r]), 1
	if r >= utf8.RuneSelf {
		r, size = utf8.DecodeRune((*b.buf)[b.r:b.w])
	}
	b.r += size
	b.lastByte, b.lastRuneSize, b.lastRune = int16((*b.buf)[b.r-1]), int8(size), r
	b.releaseIfEmpty()
	return r, size, nil
}

// UnreadRune unreads the last rune. It returns bufio.ErrInvalidUnreadRune
// if the last call was not a ReadRune.
func (b *Buffered) UnreadRune() error {
	if b.lastRuneSize < 0 {
		b.releaseIfEmpty()
		return bufio.ErrInvalidUnreadRune
	}
	size := int(b.lastRuneSize)
	switch {
	case b.buf != nil && b.r >= size:
		b.r -= size
	case b.buf != nil:
		b.releaseIfEmpty()
		return bufio.ErrInvalidUnreadRune // not after a ReadRune of this buffer
	default:
		// The rune's buffer went back to the pool. A valid rune encodes
		// to the bytes it was decoded from; an invalid byte was read as
		// RuneError of size 1.
		var enc [utf8.UTFMax]byte
		enc[0] = byte(b.lastByte)
		if size > 1 {
			utf8.EncodeRune(enc[:], b.lastRune)
		}
		b.unread(enc[:size])
	}
	b.lastByte, b.lastRuneSize = -1, -1
	return nil
}

// unread puts p back into a new buffer; nothing is buffered.
func (b *Buffered) unread(p []byte) {
	b.buf = b.pool.Get(len(p))
	b.r, b.w = 0, copy(*b.buf, p)
}

// Peek returns the next n bytes without consuming them, reading from the
// underlying Reader until n bytes are buffered or it fails. The slice is
// valid until the next call of a method of b. If fewer than n bytes are
// returned, the error explains why (io.EOF if the stream ended).
//
// n may be larger than Size(): Peek then gathers reads into a pool buffer
// that grows with what arrives, holding about twice the bytes that have
// arrived (at least 64, at most n) while it waits for the rest. No buffer
// of n bytes is taken before they are there, but Peek may end up holding
// memory proportional to n: callers bound n, for example by a maximum
// frame size. Peek returns bufio.ErrNegativeCount for n < 0.
func (b *Buffered) Peek(n int) ([]byte, error) {
	b.releaseIfEmpty()
	if n < 0 {
		return nil, bufio.ErrNegativeCount
	}
	b.lastByte, b.lastRuneSize = -1, -1
	// Read into a new buffer of up to Size() bytes when none is
	// buffered, otherwise into one that grows with what arrives.
	for b.w-b.r < n && b.err == nil {
		if b.buf == nil {
			b.fill(b.size)
		} else {
			b.makeRoom(n)
			b.gather()
		}
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
		buf, n, err, lent := b.readLent((*b.buf)[b.w:])
		switch {
		case n < 0:
			if buf != nil {
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

// Discard skips the next n bytes and returns how many it skipped; fewer
// than n only with an error. Returns bufio.ErrNegativeCount for n < 0.
func (b *Buffered) Discard(n int) (int, error) {
	b.releaseIfEmpty()
	if n < 0 {
		return 0, bufio.ErrNegativeCount
	}
	if n == 0 {
		return 0, nil
	}
	b.lastByte, b.lastRuneSize = -1, -1
	remain := n
	for remain > 0 {
		b.releaseIfEmpty()
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
	}
	b.releaseIfEmpty()
	return n, nil
}

// ReadSlice reads until the first occurrence of delim and returns a slice
// of the buffer holding the bytes up to and including it, valid until the
// next call of a method of b. If it finds no delim in Size() bytes it
// returns them with bufio.ErrBufferFull; if an error comes first, it returns
// the bytes read before it and the error (often io.EOF). ReadSlice returns
// err != nil if and only if line does not end in delim. ReadBytes and
// ReadString return copies and are usually what a caller wants.
func (b *Buffered) ReadSlice(delim byte) (line []byte, err error) {
	b.releaseIfEmpty()
	s := 0 // where to search from
	for {
		if b.buf != nil {
			if i := bytes.IndexByte((*b.buf)[b.r+s:b.w], delim); i >= 0 {
				i += s
				line = (*b.buf)[b.r : b.r+i+1]
				b.r += i + 1
				break
			}
		}
		if b.err != nil {
			if b.buf != nil {
				line = (*b.buf)[b.r:b.w]
				b.r = b.w
			}
			err = b.readErr()
			break
		}
		if b.w-b.r >= b.size {
			line = (*b.buf)[b.r:b.w]
			b.r = b.w
			err = bufio.ErrBufferFull
			break
		}
		s = b.w - b.r
		if b.buf == nil {
			b.fill(b.size)
		} else {
			b.makeRoom(b.size)
			b.gather()
		}
	}
	if i := len(line) - 1; i >= 0 {
		b.lastByte, b.lastRuneSize = int16(line[i]), -1
	}
	return line, err
}

// ReadLine is bufio.Reader.ReadLine: a low-level line reader; most callers
// want ReadBytes('\n') or ReadString('\n'). It returns a line without its
// end-of-line bytes ("\n" or "\r\n"), with isPrefix true if the line did not
// fit in Size() bytes (the rest comes with the next calls). The slice is
// valid until the next call of a method of b. It returns a non-nil line or
// an error, never both.
func (b *Buffered) ReadLine() (line []byte, isPrefix bool, err error) {
	line, err = b.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// Handle the case where "\r\n" straddles the buffer.
		if len(line) > 0 && line[len(line)-1] == '\r' {
			// Put the '\r' back and let the next call check for "\r\n".
			b.r--
			line = line[:len(line)-1]
		}
		return line, true, nil
	}
	if len(line) == 0 {
		if err != nil {
			line = nil
		}
		return line, false, err
	}
	err = nil
	if line[len(line)-1] == '\n' {
		drop := 1
		if len(line) > 1 && line[len(line)-2] == '\r' {
			drop = 2
		}
		line = line[:len(line)-drop]
	}
	return line, false, err
}

// ReadBytes reads until the first occurrence of delim and returns a new
// slice holding the bytes up to and including it. If an error comes first,
// it returns the bytes read before it and the error (often io.EOF). It
// returns err != nil if and only if the bytes do not end in delim.
func (b *Buffered) ReadBytes(delim byte) ([]byte, error) {
	// The copy is made in a function of its own, so that this frame,
	// which is on the stack while ReadSlice waits, stays small.
	frag, err := b.ReadSlice(delim)
	return b.copyLine(frag, err, delim)
}

// ReadString is ReadBytes returning a string.
func (b *Buffered) ReadString(delim byte) (string, error) {
	frag, err := b.ReadSlice(delim)
	return b.stringLine(frag, err, delim)
}

//go:noinline
func (b *Buffered) copyLine(frag []byte, err error, delim byte) ([]byte, error) {
	if err == bufio.ErrBufferFull {
		return b.readLong(frag, delim)
	}
	line := make([]byte, len(frag))
	copy(line, frag)
	b.releaseIfEmpty()
	return line, err
}

//go:noinline
func (b *Buffered) stringLine(frag []byte, err error, delim byte) (string, error) {
	if err == bufio.ErrBufferFull {
		var line []byte
		line, err = b.readLong(frag, delim)
		return string(line), err
	}
	line := string(frag)
	b.releaseIfEmpty()
	return line, err
}

// readLong finishes ReadBytes and ReadString for a line longer than
// Size(): it appends ReadSlice's pieces to a copy of the first one.
func (b *Buffered) readLong(first []byte, delim byte) ([]byte, error) {
	line := append([]byte(nil), first...)
	for {
		frag, err := b.ReadSlice(delim)
		line = append(line, frag...)
		if err != bufio.ErrBufferFull {
			b.releaseIfEmpty()
			return line, err
		}
	}
}

// errInvalidWrite is returned by WriteTo for a Write that reports a count
// outside [0, len(p)].
var errInvalidWrite = errors.New("readyreader: invalid write result")

// WriteTo writes everything up to the end of the stream to w, buffer by
// buffer as it arrives (each sized to what arrived, and back in the pool
// before the next wait), and returns the bytes written. io.Copy calls it.
// The end of the stream is not an error; a Write that writes less than it
// was given without an error fails with io.ErrShortWrite.
func (b *Buffered) WriteTo(w io.Writer) (n int64, err error) {
	b.lastByte, b.lastRuneSize = -1, -1
	b.releaseIfEmpty()
	for {
		if b.buf != nil {
			p := (*b.buf)[b.r:b.w]
			m, werr := w.Write(p)
			if m < 0 || m > len(p) {
				m, werr = 0, errInvalidWrite
			} else if werr == nil && m < len(p) {
				werr = io.ErrShortWrite
			}
			b.r += m
			n += int64(m)
			b.releaseIfEmpty()
			if werr != nil {
				return n, werr
			}
		}
		if b.err != nil {
			break
		}
		b.fill(b.size)
	}
	if b.err == io.EOF {
		b.err = nil
	}
	return n, b.readErr()
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
	b.releaseIfEmpty()
	b.lastByte, b.lastRuneSize = -1, -1
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

// lender is the pool a Buffered hands the underlying Reader during a read
// into memory the Buffered already owns (the caller's p, or the free tail
// of its buffer): the first Get that fits gets b.slot, so the bytes land
// where they are wanted without a copy. Any further Get, or one larger than
// the slot, goes to the real pool. It is the Buffered itself, so lending
// costs no allocation and no field of its own.
type lender Buffered

func (l *lender) Get(n int) *[]byte {
	if !l.slotOut && n <= len(l.slot) {
		l.slotOut = true
		l.slot = l.slot[:n]
		return &l.slot
	}
	return l.pool.Get(n)
}

func (l *lender) Put(p *[]byte) {
	if p == &l.slot {
		l.slotOut = false
		l.slot = nil
		return
	}
	l.pool.Put(p)
}
