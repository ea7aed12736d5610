package framing

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"

	"github.com/readyconn/readyconn/bufferpool"
)

// Writer writes frames described by a Spec. It is safe for concurrent use:
// each frame is written whole, and frames from concurrent calls do not
// interleave. A frame goes out in one Write or one vectored write, except a
// frame of 64 KiB or more on a *net.TCPConn, which goes out in vectored
// writes of 32 to 64 KiB each (see NewWriter); other writers on the same
// connection must then go through the Writer too.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	spec   Spec
	pool   bufferpool.Pool
	writev bool
	// piece is the size above which a frame goes out in several vectored
	// writes of at least piece bytes (TCP only, see pieceSize); 0 for never.
	piece int
	// copyMax is the largest frame written by copying even when writev
	// is on (smallFrame; tests lower it to exercise writev).
	copyMax int
	hdr     [16]byte
	vec     [8][]byte
	more    [][]byte
	bufs    net.Buffers
	err     error
}

// pieceSize is the size of the vectored writes a large frame on a TCP
// socket is cut into: a frame of 2*pieceSize bytes or more goes out in
// len/pieceSize writes of equal size instead of one. On loopback, measured
// with 64 KiB and 256 KiB frames, this is 25-40% faster than one writev of
// the whole frame, because the receiver starts draining the first piece while
// the next one is copied in; smaller pieces cost more system calls than they
// save (see BenchmarkFrameWrite).
const pieceSize = 32 << 10

// NewWriter returns a Writer of frames described by spec to w. Spec.Strip
// does not apply to writing. It fails only if spec is invalid.
//
// On *net.TCPConn and *net.UnixConn a frame larger than 4 KiB goes out as one
// vectored write (writev) of the header and the caller's slices, without
// copying; on *net.TCPConn a frame of 64 KiB or more is cut into several such
// writes of 32 to 64 KiB, which loopback measurements show to be faster than
// one. Smaller frames, and every frame to other writers, go out as one
// Write, assembled in a buffer taken from the pool and returned right after
// (an idle Writer owns no buffer).
func NewWriter(w io.Writer, spec Spec, opts ...Option) (*Writer, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	fw := &Writer{w: w, spec: spec, pool: o.pool, copyMax: smallFrame}
	switch w.(type) {
	case *net.TCPConn, *net.UnixConn:
		fw.writev = true
	}
	if _, ok := w.(*net.TCPConn); ok {
		fw.piece = pieceSize
	}
	return fw, nil
}

// WriteFrame writes one frame. The parts, concatenated, are the frame without
// its length field: the Spec's LengthOffset header bytes first, then
// everything that follows the length field. WriteFrame computes the length
// field from the Spec (the inverse of what a Reader does: value = total of
// parts − LengthOffset − Adjustment) and inserts it. The parts are not
// retained after WriteFrame returns.
//
// A frame over Spec.MaxFrameSize, or whose length the field cannot represent,
// is refused with ErrFrameTooLarge, and parts shorter than LengthOffset, or
// giving a negative length, with ErrInvalidLength; nothing is written then.
// A write error is sticky, except a timeout before any byte was written.
func (w *Writer) WriteFrame(parts ...[]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	p := 0
	for _, b := range parts {
		p += len(b)
	}
	v, ln, err := w.spec.lengthValue(p)
	if err != nil {
		return err
	}
	lf := w.hdr[:ln]
	w.spec.putLength(lf, v)
	// The splicing and the copy run in functions of their own, so that
	// WriteFrame's frame stays small on the way down to the system call
	// (stack depth matters to goroutines that park later: see
	// Reader.ReadFrame).
	var n int64
	if f := p + ln; w.writev && f > w.copyMax {
		vec := w.spliceVec(parts, lf)
		if w.piece > 0 && f >= 2*w.piece {
			n, err = w.writePieces(vec, f)
		} else {
			w.bufs = vec
			n, err = w.bufs.WriteTo(w.w)
			w.bufs = nil
		}
		clear(vec) // do not keep the caller's memory alive
	} else {
		n, err = w.writeCopy(parts, p, lf)
	}
	if err != nil {
		return w.writeErr(err, n)
	}
	return nil
}

// spliceVec returns lf and the parts as the slices of one vectored write.
//
//go:noinline
func (w *Writer) spliceVec(parts [][]byte, lf []byte) [][]byte {
	vec := w.vec[:0]
	if len(parts)+2 > len(w.vec) {
		vec = w.more[:0]
	}
	vec = splice(vec, parts, w.spec.LengthOffset, lf)
	if cap(vec) > len(w.vec) {
		w.more = vec
	}
	return vec
}

// smallFrame is the largest frame a Writer on a socket copies into one pooled
// buffer and writes with one write(2) instead of a vectored write: for small
// frames the copy costs less than the kernel's iovec handling, and the plain
// write path is also far shallower on the goroutine's stack.
const smallFrame = 4 << 10

// writeCopy writes lf and the parts, p bytes, with one Write from a pooled
// buffer.
//
//go:noinline
func (w *Writer) writeCopy(parts [][]byte, p int, lf []byte) (int64, error) {
	buf := w.pool.Get(p + len(lf))
	spliceCopy(*buf, parts, w.spec.LengthOffset, lf)
	m, err := w.w.Write(*buf)
	w.pool.Put(buf)
	return int64(m), err
}

// writePieces writes vec, f bytes in all, in f/w.piece vectored writes of
// about equal size. It consumes vec.
//
//go:noinline
func (w *Writer) writePieces(vec [][]byte, f int) (int64, error) {
	k := f / w.piece
	size := (f + k - 1) / k
	var n int64
	for len(vec) > 0 {
		// Take whole slices while they fit in size, then cut the next one.
		i, left := 0, size
		for i < len(vec) && len(vec[i]) <= left {
			left -= len(vec[i])
			i++
		}
		var rest []byte
		if i < len(vec) && left > 0 {
			rest = vec[i][left:]
			vec[i] = vec[i][:left]
			i++
		}
		w.bufs = vec[:i]
		m, err := w.bufs.WriteTo(w.w)
		w.bufs = nil
		n += m
		if err != nil {
			return n, err
		}
		if rest != nil {
			// The cut slice's remainder leads the next piece.
			i--
			vec[i] = rest
		}
		vec = vec[i:]
	}
	return n, nil
}

func (w *Writer) writeErr(err error, n int64) error {
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	w.err = err
	return err
}

// splice appends to vec the parts with lf inserted after the first off bytes,
// splitting a part if needed.
func splice(vec [][]byte, parts [][]byte, off int, lf []byte) [][]byte {
	pos := 0
	done := false
	for _, b := range parts {
		if !done && pos+len(b) >= off {
			k := off - pos
			if k > 0 {
				vec = append(vec, b[:k])
			}
			vec = append(vec, lf)
			done = true
			b = b[k:]
		}
		pos += len(b)
		if len(b) > 0 {
			vec = append(vec, b)
		}
	}
	if !done {
		vec = append(vec, lf) // off == total, parts empty
	}
	return vec
}

// spliceCopy copies the parts, with lf inserted after the first off bytes,
// into dst, which has exactly the right length.
func spliceCopy(dst []byte, parts [][]byte, off int, lf []byte) {
	n := 0
	done := false
	for _, b := range parts {
		if !done && n+len(b) >= off {
			k := off - n
			n += copy(dst[n:], b[:k])
			n += copy(dst[n:], lf)
			done = true
			b = b[k:]
		}
		n += copy(dst[n:], b)
	}
	if !done {
		copy(dst[n:], lf)
	}
}

// BufferedWriter batches frames in a buffer taken from the pool on the first
// WriteFrame after a Flush and returned by the next Flush, so that many small
// frames cost one write and an idle connection owns no buffer. It is safe for
// concurrent use. Frames larger than the buffer are written directly, after
// what is buffered.
type BufferedWriter struct {
	mu   sync.Mutex
	fw   *Writer
	size int
	buf  *[]byte
	n    int
	err  error
	lf   [16]byte
}

// DefaultBufferSize is the buffer size of a BufferedWriter created with
// size <= 0.
const DefaultBufferSize = 32 << 10

// NewBufferedWriter returns a BufferedWriter of frames described by spec to w,
// with a buffer of size bytes (DefaultBufferSize if size <= 0).
func NewBufferedWriter(w io.Writer, spec Spec, size int, opts ...Option) (*BufferedWriter, error) {
	fw, err := NewWriter(w, spec, opts...)
	if err != nil {
		return nil, err
	}
	if size <= 0 {
		size = DefaultBufferSize
	}
	return &BufferedWriter{fw: fw, size: size}, nil
}

// WriteFrame adds one frame to the buffer, flushing first if it does not fit.
// The parts are as for [Writer.WriteFrame] and are copied; they may be reused
// when WriteFrame returns. It refuses the same frames as Writer.WriteFrame. A
// write error is sticky.
func (b *BufferedWriter) WriteFrame(parts ...[]byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	spec := &b.fw.spec
	p := 0
	for _, x := range parts {
		p += len(x)
	}
	v, ln, err := spec.lengthValue(p)
	if err != nil {
		return err
	}
	f := p + ln
	if b.n+f > b.size {
		if err := b.flush(); err != nil {
			return err
		}
	}
	if f > b.size {
		if err := b.fw.WriteFrame(parts...); err != nil {
			b.err = err
			return err
		}
		return nil
	}
	if b.buf == nil {
		b.buf = b.fw.pool.Get(b.size)
		b.n = 0
	}
	dst := (*b.buf)[b.n : b.n+f]
	if len(parts) == 1 && spec.LengthOffset == 0 {
		// The common case: the length field first, then one payload.
		spec.putLength(dst[:ln], v)
		copy(dst[ln:], parts[0])
	} else {
		lf := b.lf[:ln]
		spec.putLength(lf, v)
		spliceCopy(dst, parts, spec.LengthOffset, lf)
	}
	b.n += f
	return nil
}

// Flush writes the buffered frames in one Write and returns the buffer to the
// pool.
func (b *BufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	return b.flush()
}

func (b *BufferedWriter) flush() error {
	if b.buf == nil {
		return nil
	}
	buf, n := b.buf, b.n
	b.buf, b.n = nil, 0
	_, err := b.fw.w.Write((*buf)[:n])
	b.fw.pool.Put(buf)
	if err != nil {
		b.err = err
	}
	return err
}

// Buffered returns the number of bytes waiting for Flush.
func (b *BufferedWriter) Buffered() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}
