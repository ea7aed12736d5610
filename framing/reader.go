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
// handed out as a [Frame] whose bytes live in a right-sized pooled buffer
// until [Frame.Release]. A peer that announces a large frame and stalls costs
// memory proportional to what it actually sent. A [Writer] writes the header
// and the payload parts of a frame with one vectored write, and a
// [BufferedWriter] batches small frames in a pooled buffer that it gives back
// on Flush. Steady-state reading and writing allocate nothing.
package framing

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
// buffer taken from the Reader's pool; the Frame owns that buffer until
// Release gives it back.
type Frame struct {
	b    []byte
	buf  *[]byte
	pool bufferpool.Pool
}

// Bytes returns the frame's bytes, without the Spec's Strip prefix. The slice
// is valid until Release and must not be used after it: the memory goes back
// to the pool and will be reused (a pool built with bufferpool.WithDebug
// overwrites it with bufferpool.Poison). It is empty, and may be nil, for an
// empty frame.
func (f *Frame) Bytes() []byte { return f.b }

// Len returns len(f.Bytes()).
func (f *Frame) Len() int { return len(f.b) }

// Release returns the frame's memory to the pool and clears f, so a second
// Release of the same variable does nothing. Releasing a copy of a Frame that
// has already been released returns the buffer twice, which corrupts the
// pool; a bufferpool.WithDebug pool panics on it.
func (f *Frame) Release() {
	if f.buf != nil {
		f.pool.Put(f.buf)
	}
	*f = Frame{}
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
type Reader struct {
	rr       readyreader.Reader
	spec     Spec
	pool     bufferpool.Pool
	readSize int

	// Bytes read ahead and not consumed: (*cur)[off:end].
	cur      *[]byte
	off, end int

	// A header that arrived in pieces.
	hdr  [maxHeader]byte
	hdrN int

	// The frame being assembled: h describes it, consumed counts its bytes
	// taken from the stream, (*fb)[:fbN] are its visible bytes so far.
	inFrame  bool
	h        header
	consumed int
	fb       *[]byte
	fbN      int

	// next is the header of a complete frame at the start of cur, parsed
	// by compact; valid while nextOK.
	next   header
	nextOK bool

	tail    tailPool
	pending error // error that came with the last bytes, reported when more are needed
	err     error // sticky
}

// NewReader returns a Reader of frames described by spec from r. It reads
// through readyreader.New(r), so a TCP or Unix socket is waited on without a
// buffer, and any other io.Reader still works. It fails only if spec is
// invalid.
func NewReader(r io.Reader, spec Spec, opts ...Option) (*Reader, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	return &Reader{rr: readyreader.New(r), spec: spec, pool: o.pool, readSize: o.readSize}, nil
}

// ReadFrame returns the next frame. The caller owns it and must Release it;
// its bytes are valid until then.
//
// Errors: io.EOF when the stream ends between frames; io.ErrUnexpectedEOF when
// it ends inside one; ErrFrameTooLarge (before anything of the announced size
// is allocated) and ErrInvalidLength for a bad length field; and whatever the
// connection returns (errors.Is works with net.ErrClosed and friends). Every
// error is sticky, except a timeout (errors.Is(err, os.ErrDeadlineExceeded)):
// the Reader keeps any partial frame, and ReadFrame may be called again after
// the deadline is extended.
func (r *Reader) ReadFrame() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	if r.nextOK {
		r.nextOK = false
		return r.frameFromCur(r.next), nil
	}
	if !r.inFrame && r.cur != nil {
		b := (*r.cur)[r.off:r.end]
		h, ok, err := r.spec.parseHeader(b)
		if err != nil {
			return Frame{}, r.fail(err)
		}
		if ok && h.frame <= len(b) {
			return r.frameFromCur(h), nil
		}
	}
	return r.slow()
}

// ReadFrameInto reads the next frame into dst[:0] and returns it, growing it
// as append does when the frame does not fit in cap(dst). It never returns
// bytes of an earlier frame: on error the result is dst[:0]. It has the
// errors of ReadFrame.
func (r *Reader) ReadFrameInto(dst []byte) ([]byte, error) {
	dst = dst[:0]
	if r.err != nil {
		return dst, r.err
	}
	if !r.inFrame && r.cur != nil {
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
	f, err := r.slow()
	if err != nil {
		return dst, err
	}
	dst = append(dst, f.b...)
	f.Release()
	return dst, nil
}

// Release returns the memory the Reader holds for bytes it has read but not
// handed out, and makes later calls fail with ErrReleased. Use it when
// abandoning a stream in the middle; a Reader that has returned an error, or
// sits between frames with nothing read ahead, holds nothing.
func (r *Reader) Release() {
	r.drop()
	r.err = ErrReleased
}

func (r *Reader) drop() {
	r.nextOK = false
	if r.cur != nil {
		r.pool.Put(r.cur)
		r.cur, r.off, r.end = nil, 0, 0
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

// consume advances past k bytes of cur and releases it when empty.
func (r *Reader) consume(k int) {
	r.off += k
	if r.off == r.end {
		r.pool.Put(r.cur)
		r.cur, r.off, r.end = nil, 0, 0
	}
}

// frameFromCur hands out the complete frame h at the start of cur.
func (r *Reader) frameFromCur(h header) Frame {
	var f Frame
	vis := h.frame - h.strip
	switch {
	case vis == 0:
		r.consume(h.frame)
	case r.off == 0 && h.frame == r.end && 2*vis >= cap(*r.cur):
		// The frame fills most of the buffer: hand the buffer over.
		f = Frame{b: (*r.cur)[h.strip:h.frame:h.frame], buf: r.cur, pool: r.pool}
		r.cur, r.off, r.end = nil, 0, 0
	default:
		buf := r.pool.Get(vis)
		copy(*buf, (*r.cur)[r.off+h.strip:r.off+h.frame])
		f = Frame{b: (*buf)[:vis:vis], buf: buf, pool: r.pool}
		r.consume(h.frame)
	}
	r.compact()
	return f
}

// compact makes sure that cur is kept only while it holds a complete frame:
// the bytes of a partial frame move to the header array or a frame buffer.
func (r *Reader) compact() {
	if r.cur == nil {
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

func (r *Reader) slow() (Frame, error) {
	empty := 0
	for {
		done, err := r.absorb()
		if err != nil {
			return Frame{}, r.fail(err)
		}
		if done {
			f := Frame{}
			if r.fb != nil {
				f = Frame{b: (*r.fb)[:r.fbN:r.fbN], buf: r.fb, pool: r.pool}
			}
			r.inFrame, r.fb, r.fbN, r.consumed = false, nil, 0, 0
			r.compact()
			return f, nil
		}
		// Nothing left in cur: read.
		if r.pending != nil {
			err := r.pending
			r.pending = nil
			return Frame{}, r.readErr(err)
		}
		var n int
		need := r.h.frame - r.consumed
		if r.inFrame && r.consumed >= r.h.strip && need >= r.readSize/2 {
			// A large remainder: read straight into the frame buffer.
			if r.fbN == len(*r.fb) {
				r.ensure(r.fbN + 1)
			}
			tail := (*r.fb)[r.fbN:min(len(*r.fb), r.fbN+need)]
			r.tail.b = tail
			var buf *[]byte
			buf, n, err = r.rr.ReadOnReady(len(tail), &r.tail)
			if n > 0 {
				if unsafe.SliceData(*buf) != unsafe.SliceData(tail) {
					copy(tail, (*buf)[:n])
				}
				r.fbN += n
				r.consumed += n
			}
			r.tail.b = nil
		} else {
			var buf *[]byte
			buf, n, err = r.rr.ReadOnReady(r.readSize, r.pool)
			if n > 0 {
				r.cur, r.off, r.end = buf, 0, n
			} else if buf != nil {
				r.pool.Put(buf)
			}
		}
		if n > 0 {
			empty = 0
			r.pending = err
			continue
		}
		if err == nil || errors.Is(err, io.ErrNoProgress) {
			if empty++; empty < maxEmptyReads {
				continue
			}
			err = io.ErrNoProgress
		}
		return Frame{}, r.readErr(err)
	}
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
