// Package framing reads and writes length-prefixed frames, the framing of
// most binary protocols (Kafka, PostgreSQL, gRPC messages, ALTS records,
// Apache Iggy, memcached, MQTT), without holding memory while a connection is
// idle.
//
// A [Spec] says where the length field is and what it counts, with the
// semantics of Netty's LengthFieldBasedFrameDecoder plus varint lengths. A
// [Reader] waits for the next frame through [readyreader.Reader], so on a bare
// TCP or Unix socket it owns no pooled buffer until bytes arrive; one read
// that brings many frames is parsed without further reads, and a frame is
// handed out as a [Frame] whose bytes stay valid until [Frame.Release]: frames
// that arrive in bulk are slices of the shared, reference-counted read buffer,
// others get a right-sized pooled buffer of their own. A peer that announces a large frame and stalls costs
// memory proportional to what it actually sent. A [Writer] writes the header
// and the payload parts of a frame with one vectored write on a socket, and
// on any other writer with one Write, or for a large frame several, so that
// a frame of any size needs at most a 32 KiB buffer; a [BufferedWriter]
// batches small frames in a pooled buffer that it gives back on Flush.
// Steady-state reading and writing allocate nothing.
package framing

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/readyreader"
)

// DefaultReadSize is the size of the buffer a Reader asks for when it waits
// for new bytes, unless [WithReadSize] says otherwise. The buffer is taken
// from the pool only once bytes are there and is returned as soon as they are
// consumed.
const DefaultReadSize = 32 << 10

// minChunk is the smallest buffer a partial frame is collected in.
const minChunk = 4 << 10

// maxEmptyReads is how many reads in a row may return no bytes and no error
// before the Reader gives up with io.ErrNoProgress, as in bufio.
const maxEmptyReads = 100

// ErrReleased is returned by a Reader after [Reader.Release]. It wraps
// net.ErrClosed.
var ErrReleased = fmt.Errorf("framing: reader released: %w", net.ErrClosed)

// Option configures a Reader, Writer or BufferedWriter.
type Option func(*options)

type options struct {
	pool     bufferpool.Pool
	readSize int
}

// WithPool makes the Reader or Writer take its buffers from pool instead of
// bufferpool.Default().
func WithPool(pool bufferpool.Pool) Option {
	return func(o *options) { o.pool = pool }
}

// WithReadSize sets how many bytes a Reader asks for when it reads ahead for
// the next frames (default DefaultReadSize). Larger sizes save system calls
// when many small frames arrive together; the buffer is held only while it
// holds unconsumed bytes. Writers ignore it.
func WithReadSize(n int) Option {
	return func(o *options) { o.readSize = n }
}

func buildOptions(opts []Option) options {
	o := options{readSize: DefaultReadSize}
	for _, f := range opts {
		f(&o)
	}
	if o.pool == nil {
		o.pool = bufferpool.Default()
	}
	if o.readSize <= 0 {
		o.readSize = DefaultReadSize
	}
	if o.readSize < maxHeader {
		o.readSize = maxHeader
	}
	return o
}

// Frame is one frame handed out by [Reader.ReadFrame]. Its bytes live in a
// buffer taken from the Reader's pool: either a buffer of its own, or, when
// the frame arrived in one read together with others, the read buffer itself,
// shared with those frames (see [Reader] for when). The Frame holds a
// reference to that buffer until Release; the buffer goes back to the pool
// once the Reader and every Frame cut from it are done with it.
type Frame struct {
	// The bytes are unsafe.Slice(p, n). Frame is kept to four words, so
	// that the compiler keeps it in registers rather than in memory.
	p   *byte
	n   int
	c   *chunk
	gen uint32 // c.gen when the Frame was cut
}

// Bytes returns the frame's bytes, without the Spec's Strip prefix. The slice
// is valid until Release and must not be used after it: the memory goes back
// to the pool and will be reused (with a pool built with bufferpool.WithDebug,
// Release overwrites the frame's bytes with bufferpool.Poison). It is empty,
// and may be nil, for an empty frame.
func (f *Frame) Bytes() []byte { return unsafe.Slice(f.p, f.n) }

// Len returns len(f.Bytes()).
func (f *Frame) Len() int { return f.n }

// Release gives up the frame's memory and clears f, so a second Release of
// the same variable does nothing. It may be called from any goroutine, also
// while the Reader reads on.
//
// Releasing a copy of a Frame that has already been released is a bug that
// Release reports by panicking: at once if the frame had a buffer of its own
// or the pool was built with bufferpool.WithDebug, and otherwise, for a Frame
// sharing its read buffer, at the latest when the last Frame cut from that
// buffer is released (the extra Release may have returned the buffer to the
// pool early, so the other Frames' bytes must be presumed clobbered). The
// buffer itself is never returned to the pool twice.
func (f *Frame) Release() {
	// Kept small enough to be inlined: the checks that fail only with a
	// debug pool or on misuse are out of line.
	c, gen, p, n := f.c, f.gen, f.p, f.n
	*f = Frame{}
	if c == nil {
		return
	}
	if c.gen.Load() != gen || c.dbg != nil {
		c.checkRelease(gen, unsafe.Slice(p, n))
	}
	if k := c.refs.Add(-1); k <= 0 {
		c.last(k)
	}
}

// checkRelease panics on the Release of a stale copy of a Frame, and with a
// debug pool records and poisons the released frame b.
//
//go:noinline
func (c *chunk) checkRelease(gen uint32, b []byte) {
	if c.gen.Load() != gen {
		panic(errDoubleRelease)
	}
	if c.dbg != nil {
		c.dbg.release(c, b)
	}
}

// last handles a count brought to k <= 0 by a Release.
//
//go:noinline
func (c *chunk) last(k int64) {
	if k < 0 {
		panic(errDoubleRelease)
	}
	c.free()
}

const errDoubleRelease = "framing: Frame released twice (Release of a copy of a released Frame)"

// chunk is a pooled buffer with a reference count: one reference per Frame
// that uses it, plus readerRef while the Reader still reads from it. The
// Reader counts the Frames it cuts from its read buffer in Reader.handed and
// adds them to refs in one step when it lets go of the buffer, so cutting a
// frame costs no atomic operation. Whoever brings refs to 0 puts the buffer
// back and bumps gen, so that a Release through a stale copy of a Frame is
// caught.
type chunk struct {
	refs atomic.Int64
	gen  atomic.Uint32
	buf  *[]byte
	pool bufferpool.Pool
	dbg  *chunkDebug // with a debug pool only
}

// readerRef is the Reader's share of a read buffer's count: more than the
// number of Frames that can be cut from any buffer.
const readerRef = 1 << 62

// chunks recycles the descriptors of buffers that Frames outlived; a Reader
// keeps the descriptor of a buffer it returned itself for the next one.
var chunks = sync.Pool{New: func() any { return new(chunk) }}

// free puts the buffer back once its count is 0 and recycles c.
func (c *chunk) free() {
	buf, pool := c.buf, c.pool
	c.buf, c.pool = nil, nil
	c.gen.Add(1)
	pool.Put(buf)
	chunks.Put(c)
}

// chunkDebug records which Frames of a shared buffer have been released, so
// that with a debug pool a double Release panics at once, and poisons each
// frame's bytes on Release, as the pool would if the frame had its own
// buffer.
type chunkDebug struct {
	mu       sync.Mutex
	released []uint64 // bit i: the Frame starting at byte i released
}

func (d *chunkDebug) reset() {
	d.mu.Lock()
	clear(d.released)
	d.mu.Unlock()
}

func (d *chunkDebug) release(c *chunk, b []byte) {
	// Frames are not empty and do not overlap: their first bytes tell
	// them apart.
	i := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(*c.buf)))
	w, bit := int(i/64), uint64(1)<<(i%64)
	d.mu.Lock()
	for len(d.released) <= w {
		d.released = append(d.released, 0)
	}
	again := d.released[w]&bit != 0
	d.released[w] |= bit
	d.mu.Unlock()
	if again {
		panic(errDoubleRelease)
	}
	poison(b)
}

func poison(b []byte) {
	n := copy(b, bufferpool.Poison)
	for n < len(b) {
		n += copy(b[n:], b[:n])
	}
}

// isDebugPool reports whether p is a bufferpool.WithDebug pool.
func isDebugPool(p bufferpool.Pool) bool {
	d, ok := p.(interface{ Debug() bool })
	return ok && d.Debug()
}

// Reader reads frames described by a Spec. It is not safe for concurrent
// use, except that the underlying connection may be closed, or its deadline
// changed, from another goroutine while ReadFrame waits.
//
// Memory: while ReadFrame waits for the first byte of a frame, the Reader
// owns no pooled buffer (on connections where readyreader.New does not pin
// one). While it waits for the rest of a frame it owns one buffer holding the
// bytes received so far, of at most max(4 KiB, 2×received) bytes rounded up
// to the pool's size class, however large the announced frame. Between calls
// it keeps the last read's buffer only while that buffer still holds a
// complete unread frame; bytes of a partial frame are moved to right-sized
// memory before ReadFrame returns.
//
// Frames may keep the read buffer alive: when a read fills at least half of
// its buffer (frames arriving in bulk), the frames in it are handed out as
// slices of that buffer, without a copy. An unreleased Frame from such a read
// then keeps the whole read buffer, of up to [WithReadSize] bytes rounded up
// to the pool's size class, owned until it and every other Frame from the
// same read are released, also while the Reader waits for more bytes; that is
// at most twice the bytes that arrived in the read. A frame from a read that
// filled less than half of its buffer (a lone request, say) is copied to a
// buffer of its own sized to the frame, and so is a frame that arrived over
// several reads, so an unreleased Frame of that kind holds only its own size.
// Callers that keep frames for long should copy out what they keep and
// Release.
type Reader struct {
	rr       readyreader.Reader
	spec     Spec
	fast     fastHeader
	pool     bufferpool.Pool
	readSize int

	// Bytes read ahead and not consumed: (*cur)[off:end].
	cur      *[]byte
	off, end int

	// A header that arrived in pieces: (*hdr)[:hdrN]. The array is made
	// the first time a header is split (an idle Reader is small: see
	// TestIdleSizes) and kept.
	hdr  *[maxHeader]byte
	hdrN int

	// The frame being assembled: h describes it (while inFrame), consumed
	// counts its bytes taken from the stream, (*fb)[:fbN] are its visible
	// bytes so far.
	h        header
	consumed int
	fb       *[]byte
	fbN      int

	// next is the header of a complete frame at the start of cur, parsed
	// by compact; valid while nextOK.
	next header

	// share: cur came from a read that filled at least half of it, so its
	// frames are handed out as slices of it. Once the first one is, ch is
	// cur's descriptor (with generation chGen) and handed counts the Frames
	// cut from it. spare is a descriptor to reuse.
	ch     *chunk
	handed int64
	spare  *chunk
	chGen  uint32

	empty int32 // reads in a row that brought nothing

	inFrame  bool
	nextOK   bool
	share    bool
	shareAll bool // tests: share whatever the fill
	debug    bool // the pool is a bufferpool.WithDebug pool

	tail    tailPool
	pending error // error that came with the last bytes, reported when more are needed
	err     error // sticky
}

// NewReader returns a Reader of frames described by spec from r. It reads
// through readyreader.New(r), so a TCP or Unix socket is waited on without a
// buffer, and any other io.Reader still works. It fails only if spec is
// invalid.
func NewReader(r io.Reader, spec Spec, opts ...Option) (*Reader, error) {
	// The work is split so that the calls that may go deep (allocation,
	// and readyreader.New, which sets up the connection's raw reads) run
	// from small frames: a reader goroutine that outgrows its initial
	// 2 KiB stack once keeps the larger stack while it is parked (see
	// [Reader.ReadFrame]).
	rd, err := newReader(&spec, opts)
	if err != nil {
		return nil, err
	}
	rd.rr = readyreader.New(r)
	return rd, nil
}

// newReader returns a Reader for spec without its connection.
//
//go:noinline
func newReader(spec *Spec, opts []Option) (*Reader, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	r := new(Reader)
	r.spec = *spec
	r.fast = newFastHeader(spec)
	r.pool, r.readSize, r.debug = o.pool, o.readSize, isDebugPool(o.pool)
	return r, nil
}

// ReadFrame returns the next frame. The caller owns it and must Release it;
// its bytes are valid until then. An unreleased Frame may keep the buffer of
// the read it arrived in alive (see [Reader]).
//
// Errors: io.EOF when the stream ends between frames; io.ErrUnexpectedEOF when
// it ends inside one; ErrFrameTooLarge (before anything of the announced size
// is allocated) and ErrInvalidLength for a bad length field; and whatever the
// connection returns (errors.Is works with net.ErrClosed and friends). Every
// error is sticky, except a timeout (errors.Is(err, os.ErrDeadlineExceeded)):
// the Reader keeps any partial frame, and ReadFrame may be called again after
// the deadline is extended.
func (r *Reader) ReadFrame() (Frame, error) {
	if r.nextOK && r.ch != nil && r.err == nil {
		// The next frame is complete in a buffer already shared.
		lo, hi := r.off+r.next.strip, r.off+r.next.frame
		if lo < hi {
			h, ok := r.fast.complete((*r.cur)[hi:r.end])
			if !ok {
				// The last complete frame in cur.
				r.nextOK = false
				return r.frameFromCur(r.next), nil
			}
			p := unsafe.SliceData((*r.cur)[lo:hi])
			r.handed++
			r.off, r.next = hi, h
			return Frame{p: p, n: hi - lo, c: r.ch, gen: r.chGen}, nil
		}
	}
	// Stack depth matters here: a goroutine parks in ReadFrame for as long
	// as its connection is idle, and one that has outgrown its initial
	// 2 KiB stack keeps the larger stack while parked (the GC shrinks a
	// stack only when a quarter of it suffices). So the frames on the path
	// to the read that waits, ReadFrame and fill, are kept small; parsing
	// and assembling run in frame, which has returned before fill waits.
	for {
		f, more, err := r.frame()
		if !more {
			return f, err
		}
		buf, n, err := r.rr.ReadOnReady(r.readSize, r.pool)
		if err := r.filled(buf, n, err); err != nil {
			return Frame{}, err
		}
	}
}

// frame returns the next frame if the bytes read so far hold it, and
// otherwise more == true: fill must read first.
func (r *Reader) frame() (f Frame, more bool, err error) {
	if r.err != nil {
		return Frame{}, false, r.err
	}
	if r.nextOK {
		r.nextOK = false
		return r.frameFromCur(r.next), false, nil
	}
	if !r.inFrame && r.hdrN == 0 && r.cur != nil {
		b := (*r.cur)[r.off:r.end]
		h, ok, err := r.spec.parseHeader(b)
		if err != nil {
			return Frame{}, false, r.fail(err)
		}
		if ok && h.frame <= len(b) {
			return r.frameFromCur(h), false, nil
		}
	}
	for {
		buf, n, more, err := r.assemble()
		if !more || !r.tailRead() {
			if buf == nil {
				return Frame{}, more, err
			}
			return r.ownFrame(buf, n), false, nil
		}
		// The rest of a large frame is read here, straight into the frame
		// buffer: a goroutine only waits here in the middle of a frame.
		n, err = r.fillTail()
		if err = r.readTail(n, err); err != nil {
			return Frame{}, false, err
		}
	}
}

// ReadFrameInto reads the next frame into dst[:0] and returns it, growing it
// as append does when the frame does not fit in cap(dst). It never returns
// bytes of an earlier frame: on error the result is dst[:0]. It has the
// errors of ReadFrame.
func (r *Reader) ReadFrameInto(dst []byte) ([]byte, error) {
	dst = dst[:0]
	for {
		if r.err != nil {
			return dst, r.err
		}
		if !r.inFrame && r.hdrN == 0 && r.cur != nil {
			b := (*r.cur)[r.off:r.end]
			h, ok, err := r.next, r.nextOK, error(nil)
			if !ok {
				h, ok, err = r.spec.parseHeader(b)
			}
			r.nextOK = false
			if err != nil {
				return dst, r.fail(err)
			}
			if ok && h.frame <= len(b) {
				dst = append(dst, b[h.strip:h.frame]...)
				r.consume(h.frame)
				r.compact()
				return dst, nil
			}
		}
		buf, n, more, err := r.assemble()
		switch {
		case more:
			if err := r.fill(); err != nil {
				return dst, err
			}
			continue
		case err != nil:
			return dst, err
		case buf != nil:
			dst = append(dst, (*buf)[:n]...)
			r.pool.Put(buf)
		}
		return dst, nil
	}
}

// Release returns the memory the Reader holds for bytes it has read but not
// handed out, and makes later calls fail with ErrReleased (until a
// [Reader.Reset]). Use it when abandoning a stream in the middle; a Reader
// that has returned an error, or sits between frames with nothing read
// ahead, holds nothing.
func (r *Reader) Release() {
	r.drop()
	r.err = ErrReleased
	if r.spare != nil {
		chunks.Put(r.spare)
		r.spare = nil
	}
}

// Reset discards the bytes the Reader has read ahead and any frame it was
// assembling, gives their memory back, clears its error (ErrReleased too),
// and makes it read from rd, with its Spec and options, as a Reader from
// NewReader(rd, ...) would: bufio.Reader.Reset for frames. Frames handed out
// before Reset are not affected: each stays valid until its Release (a Frame
// sharing a read buffer keeps that buffer until then). Like ReadFrame, Reset
// must not run concurrently with another call on the Reader.
//
// Reset lets a pool of Readers serve connection after connection; with a rd
// that is a readyreader.Reader it allocates nothing, with a socket it sets
// up the socket's raw reads as NewReader does.
func (r *Reader) Reset(rd io.Reader) {
	r.drop()
	r.empty, r.pending, r.err = 0, nil, nil
	r.rr = readyreader.New(rd)
}

func (r *Reader) drop() {
	r.nextOK = false
	if r.cur != nil {
		r.putCur()
	}
	if r.fb != nil {
		r.pool.Put(r.fb)
		r.fb, r.fbN = nil, 0
	}
	r.inFrame, r.hdrN, r.consumed = false, 0, 0
}

func (r *Reader) fail(err error) error {
	r.drop()
	r.err = err
	return err
}

// consume advances past k bytes of cur and lets go of it when empty.
func (r *Reader) consume(k int) {
	r.off += k
	if r.off == r.end {
		r.putCur()
	}
}

// putCur lets go of cur: it goes back to the pool now, or, if Frames cut
// from it are still out, when the last of them is released.
func (r *Reader) putCur() {
	cur, c := r.cur, r.ch
	r.cur, r.off, r.end, r.ch = nil, 0, 0, nil
	if c == nil {
		r.pool.Put(cur)
		return
	}
	switch n := c.refs.Add(r.handed - readerRef); {
	case n == 0:
		// Every Frame is released: keep the descriptor for the next buffer.
		c.buf, c.pool = nil, nil
		c.gen.Add(1)
		r.pool.Put(cur)
		r.spare = c
	case n < 0:
		panic(errDoubleRelease)
	}
}

// newChunk returns a descriptor for buf with count refs.
func (r *Reader) newChunk(buf *[]byte, refs int64) *chunk {
	c := r.spare
	if c != nil {
		r.spare = nil
	} else {
		c = chunks.Get().(*chunk)
	}
	c.buf, c.pool = buf, r.pool
	c.refs.Store(refs)
	switch {
	case !r.debug:
		c.dbg = nil
	case c.dbg == nil:
		c.dbg = new(chunkDebug)
	default:
		c.dbg.reset()
	}
	return c
}

// ownFrame returns a Frame of the first n bytes of buf, which it owns.
func (r *Reader) ownFrame(buf *[]byte, n int) Frame {
	c := r.newChunk(buf, 1)
	return Frame{p: unsafe.SliceData((*buf)[:n]), n: n, c: c, gen: c.gen.Load()}
}

// frameFromCur hands out the complete frame h at the start of cur.
func (r *Reader) frameFromCur(h header) Frame {
	var f Frame
	lo, hi := r.off+h.strip, r.off+h.frame
	switch {
	case lo == hi:
	case r.share:
		if r.ch == nil {
			r.ch = r.newChunk(r.cur, readerRef)
			r.chGen, r.handed = r.ch.gen.Load(), 0
		}
		f = Frame{p: unsafe.SliceData((*r.cur)[lo:hi]), n: hi - lo, c: r.ch, gen: r.chGen}
		r.handed++
	default:
		buf := r.pool.Get(hi - lo)
		copy(*buf, (*r.cur)[lo:hi])
		f = r.ownFrame(buf, hi-lo)
	}
	r.consume(h.frame)
	r.compact()
	return f
}

// compact makes sure that cur is kept only while it holds a complete frame:
// the bytes of a partial frame move to the header array or a frame buffer.
func (r *Reader) compact() {
	if r.cur == nil {
		return
	}
	if h, ok := r.fast.complete((*r.cur)[r.off:r.end]); ok {
		r.next, r.nextOK = h, true
		return
	}
	h, ok, err := r.spec.parseHeader((*r.cur)[r.off:r.end])
	if err != nil {
		return // let the next call report it
	}
	if ok && h.frame <= r.end-r.off {
		r.next, r.nextOK = h, true
		return
	}
	r.absorb()
}

// absorb moves the bytes of cur into the header array and the frame being
// assembled, until cur is used up or a frame is complete. It reports
// whether a frame is complete.
func (r *Reader) absorb() (bool, error) {
	for {
		if r.inFrame {
			need := r.h.frame - r.consumed
			if need == 0 {
				return true, nil
			}
			if r.cur == nil {
				return false, nil
			}
			k := min(need, r.end-r.off)
			if skip := r.h.strip - r.consumed; skip > 0 {
				k = min(k, skip)
			} else {
				r.ensure(r.fbN + k)
				copy((*r.fb)[r.fbN:], (*r.cur)[r.off:r.off+k])
				r.fbN += k
			}
			r.consumed += k
			r.consume(k)
			continue
		}
		if r.cur == nil {
			return false, nil
		}
		b := (*r.cur)[r.off:r.end]
		if r.hdrN == 0 {
			h, ok, err := r.spec.parseHeader(b)
			if err != nil {
				return false, err
			}
			if !ok {
				// len(b) < the header's size <= maxHeader
				if r.hdr == nil {
					r.hdr = new([maxHeader]byte)
				}
				r.hdrN = copy(r.hdr[:], b)
				r.consume(len(b))
				continue
			}
			r.startFrame(h, b[:h.end], len(b))
			r.consume(h.end)
			continue
		}
		k := copy(r.hdr[r.hdrN:], b)
		h, ok, err := r.spec.parseHeader(r.hdr[:r.hdrN+k])
		if err != nil {
			return false, err
		}
		if !ok {
			r.hdrN += k
			r.consume(k)
			continue
		}
		used := h.end - r.hdrN
		r.hdrN = 0
		r.startFrame(h, r.hdr[:h.end], h.end+len(b)-used)
		r.consume(used)
	}
}

// startFrame begins assembling frame h, whose first h.end bytes are hb and of
// which received bytes have arrived.
func (r *Reader) startFrame(h header, hb []byte, received int) {
	r.inFrame, r.h, r.consumed = true, h, h.end
	vis := h.frame - h.strip
	if vis == 0 {
		return
	}
	recvVis := min(received, h.frame) - h.strip
	want := min(vis, max(minChunk, 2*recvVis))
	r.fb = r.pool.Get(want)
	*r.fb = (*r.fb)[:min(cap(*r.fb), vis)]
	r.fbN = 0
	if h.strip < h.end {
		r.fbN = copy(*r.fb, hb[h.strip:])
	}
}

// ensure grows the frame buffer to hold n visible bytes, at least doubling
// it, but never beyond the frame.
func (r *Reader) ensure(n int) {
	if n <= len(*r.fb) {
		return
	}
	vis := r.h.frame - r.h.strip
	nb := r.pool.Get(min(vis, max(n, 2*len(*r.fb))))
	*nb = (*nb)[:min(cap(*nb), vis)]
	copy(*nb, (*r.fb)[:r.fbN])
	r.pool.Put(r.fb)
	r.fb = nb
}

// assemble continues the frame being assembled with the bytes read ahead.
// If that completes it, it returns the frame's visible bytes as (*buf)[:n],
// with buf owned by the caller, or a nil buf for an empty frame. If the
// bytes run out first, it returns more == true (a read is needed), or the
// error that came with the last bytes. A complete frame left at the start
// of cur is taken from there by the caller, without a copy.
func (r *Reader) assemble() (buf *[]byte, n int, more bool, err error) {
	done, err := r.absorb()
	if err != nil {
		return nil, 0, false, r.fail(err)
	}
	if done {
		buf, n := r.fb, r.fbN
		r.inFrame, r.fb, r.fbN, r.consumed = false, nil, 0, 0
		r.compact()
		return buf, n, false, nil
	}
	if r.pending != nil {
		err := r.pending
		r.pending = nil
		return nil, 0, false, r.readErr(err)
	}
	return nil, 0, true, nil
}

// tailRead reports whether the next read goes straight into the frame
// buffer: the rest of the frame is large.
func (r *Reader) tailRead() bool {
	return r.inFrame && r.consumed >= r.h.strip && r.h.frame-r.consumed >= r.readSize/2
}

// fill reads once: into a read buffer that becomes cur or, for the rest of
// a large frame, straight into the frame buffer. It returns an error only
// when the caller should return it.
func (r *Reader) fill() error {
	if r.tailRead() {
		return r.readTail(r.fillTail())
	}
	buf, n, err := r.rr.ReadOnReady(r.readSize, r.pool)
	return r.filled(buf, n, err)
}

// filled takes the result of a read of r.readSize bytes: (*buf)[:n] becomes
// cur. It returns an error only when the caller should return it.
func (r *Reader) filled(buf *[]byte, n int, err error) error {
	if n <= 0 {
		if buf != nil {
			r.pool.Put(buf)
		}
		return r.noBytes(err)
	}
	r.cur, r.off, r.end = buf, 0, n
	r.share = r.shareAll || 2*n >= cap(*buf)
	r.empty = 0
	r.pending = err
	if !r.inFrame && r.hdrN == 0 {
		// Keep cur only for a complete frame, which the caller takes
		// from there.
		r.compact()
	}
	return nil
}

// readTail takes the result of fillTail.
func (r *Reader) readTail(n int, err error) error {
	if n <= 0 {
		return r.noBytes(err)
	}
	r.empty = 0
	r.pending = err
	return nil
}

// fillTail reads the large remainder of a frame straight into the frame
// buffer.
func (r *Reader) fillTail() (int, error) {
	need := r.h.frame - r.consumed
	if r.fbN == len(*r.fb) {
		r.ensure(r.fbN + 1)
	}
	tail := (*r.fb)[r.fbN:min(len(*r.fb), r.fbN+need)]
	r.tail.b = tail
	buf, n, err := r.rr.ReadOnReady(len(tail), &r.tail)
	if n > 0 {
		if unsafe.SliceData(*buf) != unsafe.SliceData(tail) {
			copy(tail, (*buf)[:n])
		}
		r.fbN += n
		r.consumed += n
	}
	r.tail.b = nil
	return n, err
}

// noBytes handles a read that brought no bytes: it tolerates a few in a row
// without an error, as bufio does.
func (r *Reader) noBytes(err error) error {
	if err == nil || errors.Is(err, io.ErrNoProgress) {
		if r.empty++; r.empty < maxEmptyReads {
			return nil
		}
		err = io.ErrNoProgress
	}
	r.empty = 0
	return r.readErr(err)
}

// readErr turns an error from the connection into the Reader's error.
func (r *Reader) readErr(err error) error {
	if err == io.EOF {
		if r.inFrame || r.hdrN > 0 {
			err = io.ErrUnexpectedEOF
		}
		return r.fail(err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err // keep the partial frame; the caller may retry
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return r.fail(err)
}

// tailPool lends the unfilled tail of a frame buffer to ReadOnReady, so that
// the rest of a large frame is read in place, without a copy.
type tailPool struct{ b []byte }

func (t *tailPool) Get(n int) *[]byte {
	if n <= len(t.b) {
		t.b = t.b[:n]
		return &t.b
	}
	b := make([]byte, n) // a Reader asking for more than it was told; copied by the caller
	return &b
}

func (t *tailPool) Put(*[]byte) {}
