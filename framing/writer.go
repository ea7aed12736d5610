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
// each frame is written whole, in one Write or one vectored write, and frames
// from concurrent calls do not interleave.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	spec   Spec
	pool   bufferpool.Pool
	writev bool
	// copyMax is the largest frame written by copying even when writev
	// is on (smallFrame; tests lower it to exercise writev).
	copyMax int
	hdr     [16]byte
	vec     [8][]byte
	more    [][]byte
	bufs    net.Buffers
	err     error
}

// NewWriter returns a Writer of frames described by spec to w. Spec.Strip
// does not apply to writing. It fails only if spec is invalid.
//
// On *net.TCPConn and *net.UnixConn a frame larger than 4 KiB goes out as one
// vectored write (writev) of the header and the caller's slices, without
// copying. Smaller frames, and every frame to other writers, go out as one
// Write, assembled in a buffer taken from the pool and returned right after.
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
	if w.writev && p+ln > w.copyMax {
		vec := w.spliceVec(parts, lf)
		w.bufs = vec
		n, err = w.bufs.WriteTo(w.w)
		clear(vec) // do not keep the caller's memory alive
		w.bufs = nil
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
	lf := b.lf[:ln]
	spec.putLength(lf, v)
	spliceCopy((*b.buf)[b.n:b.n+f], parts, spec.LengthOffset, lf)
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
