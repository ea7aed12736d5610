// Package record is the machinery that readyconn's secure record layers
// (package alts and package tlsconn) share: a [Reader] that assembles
// length-prefixed records from a connection without holding a buffer while
// the connection is idle, [Pending] ciphertext that a timed-out write left
// half sent, and a [HandshakeConn] through which crypto/tls runs a handshake
// one TLS record at a time, so that nothing after the handshake is consumed.
//
// A Reader waits through readyreader: with nothing buffered it owns no
// memory, takes a pool buffer sized to what arrived when bytes come, grows it
// with what arrives up to the length a record announces (never to the
// announced length before its bytes are there), hands complete records to the
// protocol, which opens them in place or straight into the caller's slice,
// and gives the buffer back, cleared where plaintext was written, as soon as
// everything in it is consumed.
package record

import (
	"errors"
	"io"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/readyreader"
)

const (
	// WakeReadSize is how much a read asks for when nothing is buffered and
	// the connection can be waited on without a buffer: the buffer is taken
	// once bytes have arrived and is sized to what is queued, up to this.
	WakeReadSize = 64 << 10
	// BlockingReadSize replaces WakeReadSize when reads must block with
	// their buffer (Windows, or a net.Conn that is not a bare socket). It
	// holds one record of 16 KiB of plaintext plus overhead and is a class
	// of the default pool: about what an idle crypto/tls connection keeps.
	BlockingReadSize = 20 << 10
	// minHold is the smallest buffer a partial record is kept in.
	minHold = 4 << 10
)

// Format describes a record format whose length can be read from a fixed
// number of leading bytes.
type Format struct {
	// HeaderLen is how many leading bytes Length needs.
	HeaderLen int
	// Length returns the total length, header included, of the record
	// whose first HeaderLen bytes are h, or an error for a header that
	// cannot begin a valid record (the Reader calls it before sizing any
	// buffer for the record, so an oversized length is refused before
	// allocation).
	Length func(h []byte) (int, error)
	// Truncated is Fill's error when the stream ends inside a record. It
	// should wrap io.ErrUnexpectedEOF.
	Truncated error
}

// Reader assembles records. It is not safe for concurrent use: the
// protocol's read lock serialises it. The zero value is not usable; call
// Init.
type Reader struct {
	conn     io.Reader          // reads into a buffer that holds part of a record
	rr       readyreader.Reader // waits without a buffer
	pool     bufferpool.Pool
	f        *Format
	readSize int

	buf      *[]byte // from pool; nil when nothing is buffered
	pos, end int     // unparsed bytes are (*buf)[pos:end]
	dirty    int     // (*buf)[:dirty] may hold plaintext: cleared before Put
	plain    []byte  // opened and not yet delivered; aliases *buf
	perr     error   // error of the last read, reported once its bytes are used
	wake     wakePool
}

// Init sets r up to read records of format f from conn, taking buffers from
// pool. It reads through readyreader.NewNonBlocking(conn) where that exists,
// and through readyreader.New(conn) with BlockingReadSize otherwise.
func (r *Reader) Init(conn io.Reader, pool bufferpool.Pool, f *Format) {
	*r = Reader{conn: conn, pool: pool, f: f, readSize: WakeReadSize}
	r.rr = readyreader.NewNonBlocking(conn)
	if r.rr == nil {
		r.rr, r.readSize = readyreader.New(conn), BlockingReadSize
	}
	r.wake.r = r
}

// Pinning reports whether reads block with their buffer (no non-blocking
// path for the connection).
func (r *Reader) Pinning() bool { return r.readSize == BlockingReadSize }

// SetLeftover makes b, copied, the first bytes of the stream.
func (r *Reader) SetLeftover(b []byte) {
	if len(b) == 0 {
		return
	}
	r.Release()
	r.buf = r.pool.Get(len(b))
	r.pos, r.end = 0, copy(*r.buf, b)
}

// Plain returns the opened bytes not yet delivered.
func (r *Reader) Plain() []byte { return r.plain }

// SetPlain records p, a part of the last record Next returned that was
// opened in place, as opened bytes to deliver.
func (r *Reader) SetPlain(p []byte) { r.plain = p }

// Opened notes that a record Next returned was opened in place: the buffer
// up to the end of that record is cleared before it goes back to the pool.
func (r *Reader) Opened() { r.dirty = r.pos }

// Deliver copies opened bytes into p, and releases the buffer if that
// drained it. It returns the number of bytes copied.
func (r *Reader) Deliver(p []byte) int {
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	r.ReleaseIfDrained()
	return n
}

// Unparsed returns how many bytes of the stream are buffered and not yet
// returned by Next.
func (r *Reader) Unparsed() int { return r.end - r.pos }

// Next returns the next complete record, header included, and consumes it,
// or nil if no complete record is buffered. It checks a header as soon as
// its bytes are there, before any buffer is sized for the record. The record
// is valid until the next call of Fill, Release or ReleaseIfDrained. Errors
// come from Format.Length.
func (r *Reader) Next() ([]byte, error) {
	if r.buf == nil {
		return nil, nil
	}
	b := (*r.buf)[r.pos:r.end]
	if len(b) < r.f.HeaderLen {
		return nil, nil
	}
	total, err := r.f.Length(b[:r.f.HeaderLen])
	if err != nil {
		return nil, err
	}
	if len(b) < total {
		return nil, nil
	}
	r.pos += total
	return b[:total:total], nil
}

// need is the total size of the partially buffered record b, or HeaderLen
// while its length is not known yet (or invalid: Next reports that).
func (r *Reader) need(b []byte) int {
	if len(b) < r.f.HeaderLen {
		return r.f.HeaderLen
	}
	total, err := r.f.Length(b[:r.f.HeaderLen])
	if err != nil {
		return r.f.HeaderLen
	}
	return total
}

// Fill reads more bytes. With nothing buffered it waits through the
// readyreader, holding no buffer; with part of a record buffered it reads
// into the free space of the buffer if there is a useful amount, and
// otherwise moves the partial record into a larger buffer taken only once
// bytes have arrived. It returns io.EOF when the stream ends between
// records, Format.Truncated when it ends inside one, io.ErrNoProgress after
// a read that returned nothing, and the connection's other errors as they
// are. An error that came with bytes is returned by the next Fill.
//
// The wait path is kept shallow on purpose: a goroutine parks here for as
// long as its connection is idle, and one whose stack grew past 2 KiB keeps
// the larger stack while parked.
func (r *Reader) Fill() error {
	if r.perr != nil {
		return r.pending()
	}
	if r.buf == nil {
		buf, n, err := r.rr.ReadOnReady(r.readSize, r.pool)
		return r.filled(buf, n, err)
	}
	return r.fillMore()
}

// filled takes the result of a read into an empty Reader.
func (r *Reader) filled(buf *[]byte, n int, err error) error {
	if n > 0 {
		r.buf, r.pos, r.end, r.dirty = buf, 0, n, 0
		r.perr = err
		return nil
	}
	if buf != nil {
		r.pool.Put(buf)
	}
	return r.readErr(err)
}

// pending returns, once, the error that came with the last bytes.
//
//go:noinline
func (r *Reader) pending() error {
	err := r.perr
	r.perr = nil
	return r.readErr(err)
}

// fillMore reads the rest of a partially buffered record.
//
//go:noinline
func (r *Reader) fillMore() error {
	b := *r.buf
	k := r.end - r.pos
	need := r.need(b[r.pos:r.end])
	free := cap(b) - r.end
	if free >= min(need-k, minHold) {
		n, err := r.conn.Read(b[r.end:cap(b)])
		if n > 0 {
			r.end += n
			r.perr = err
			return nil
		}
		return r.readErr(err)
	}
	// Grow: the partial record moves to the front of a new buffer of
	// k + readLen bytes once bytes have arrived.
	readLen := max(r.readSize, min(need-k, k))
	r.wake.k = k
	buf, n, err := r.rr.ReadOnReady(readLen, &r.wake)
	switch {
	case n == 0:
		if buf != nil {
			r.wake.Put(buf)
		}
		r.wake.reset()
		return r.readErr(err)
	case buf == &r.wake.view:
		// The wake buffer holds the partial record and then the new bytes.
		r.put()
		r.buf, r.pos, r.end = r.wake.orig, 0, k+n
		r.wake.reset()
	default:
		// The readyreader used a buffer of its own: merge. If it took
		// the wake buffer too and did not give it back (which it owes
		// the pool), give it back here rather than leak it.
		if r.wake.orig != nil {
			r.pool.Put(r.wake.orig)
		}
		r.wake.reset()
		nb := r.pool.Get(k + n)
		copy(*nb, b[r.pos:r.end])
		copy((*nb)[k:], (*buf)[:n])
		r.wake.Put(buf)
		r.put()
		r.buf, r.pos, r.end = nb, 0, k+n
	}
	r.perr = err
	return nil
}

// readErr turns an error of the connection into Fill's error.
func (r *Reader) readErr(err error) error {
	if err == nil {
		return io.ErrNoProgress
	}
	if errors.Is(err, io.EOF) {
		if r.buf != nil && r.end > r.pos {
			return r.f.Truncated
		}
		return io.EOF
	}
	return err
}

// put returns the buffer to the pool, cleared where plaintext may be. It is
// called only once the plaintext is consumed, and drops the empty view of
// it too: an empty slice still points into the buffer, and would keep it
// from the garbage collector after the pool let go of it.
func (r *Reader) put() {
	clear((*r.buf)[:r.dirty])
	r.pool.Put(r.buf)
	r.buf, r.dirty, r.plain = nil, 0, nil
}

// Release returns the buffer to the pool, cleared where plaintext may be,
// and drops everything buffered.
func (r *Reader) Release() {
	r.plain = nil
	if r.buf != nil {
		r.put()
	}
	r.pos, r.end = 0, 0
}

// ReleaseIfDrained gives the buffer back when it holds no opened bytes and
// no unparsed ones, and otherwise shrinks it when a partial record is all
// it holds and the buffer is much larger than what has arrived.
func (r *Reader) ReleaseIfDrained() {
	if len(r.plain) > 0 || r.buf == nil {
		return
	}
	k := r.end - r.pos
	if k == 0 {
		r.put()
		r.pos, r.end = 0, 0
		return
	}
	b := *r.buf
	need := r.need(b[r.pos:r.end])
	if need <= k {
		return // a complete record is waiting
	}
	target := min(need, max(2*k, minHold))
	if cap(b) <= 2*target {
		return
	}
	nb := r.pool.Get(target)
	copy(*nb, b[r.pos:r.end])
	r.put()
	r.buf, r.pos, r.end = nb, 0, k
}

// wakePool is the pool a Reader hands its readyreader while part of a
// record is buffered: the first Get takes a buffer of k+n bytes from the
// Reader's pool, copies the k buffered bytes to its front and returns a view
// of the n bytes after them, so the new bytes land right behind the partial
// record without a second copy, and the larger buffer is taken only once
// bytes have arrived.
type wakePool struct {
	r    *Reader
	k    int
	orig *[]byte // the pool buffer behind view
	view []byte
}

func (w *wakePool) Get(n int) *[]byte {
	if w.orig != nil {
		return w.r.pool.Get(n)
	}
	r := w.r
	w.orig = r.pool.Get(w.k + n)
	copy(*w.orig, (*r.buf)[r.pos:r.end])
	w.view = (*w.orig)[w.k : w.k+n]
	return &w.view
}

func (w *wakePool) Put(b *[]byte) {
	if b == &w.view {
		w.r.pool.Put(w.orig)
		w.orig, w.view = nil, nil
		return
	}
	w.r.pool.Put(b)
}

func (w *wakePool) reset() { w.orig, w.view, w.k = nil, nil, 0 }
