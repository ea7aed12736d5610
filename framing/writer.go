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
// large frame, which goes out in several (see NewWriter); other writers on
// the same connection must then go through the Writer too.
type Writer struct {
	mu   sync.Mutex
	w    io.Writer
	spec Spec
	pool bufferpool.Pool
	// copyMax is the largest frame written with one Write from one pooled
	// buffer, and without writev the size of the buffer a larger frame's
	// small slices are coalesced in (smallFrame or streamChunk, see
	// NewWriter; tests lower it).
	copyMax int32
	// piece is the size above which a frame goes out in several vectored
	// writes of at least piece bytes (TCP only, see pieceSize); 0 for never.
	piece int32
	// pos is the first slice of vecs not yet written of a frame written in
	// vectored pieces, to be replaced by cut if that is not nil; wrote is
	// set once a piece has gone out (see nextPiece).
	pos    int32
	wrote  bool
	writev bool
	ln     uint8   // the length field is hdr[:ln] (set by begin)
	hdr    [8]byte // the longest length field: 8 bytes, or a uvarint below maxMaxFrame
	// v holds the slices of a frame written without copying it whole,
	// made on the first such frame (so that an idle Writer that only ever
	// wrote small frames is small: see TestIdleSizes) and reused.
	v   *vectors
	err error
}

// vectors is the state of a frame written as several slices: vecs are the
// length field and the caller's parts, bufs the piece being written, and
// cut the remainder of a slice a piece ended in.
type vectors struct {
	vecs [][]byte
	bufs net.Buffers
	cut  []byte
	// small backs vecs for frames of up to two parts (a part cut by the
	// length field takes two slices), in the same allocation.
	small [4][]byte
}

// pieceSize is the size of the vectored writes a large frame on a TCP
// socket is cut into: a frame of 2*pieceSize bytes or more goes out in
// len/pieceSize writes of equal size instead of one. On loopback, measured
// with 64 KiB and 256 KiB frames, this is 25-40% faster than one writev of
// the whole frame, because the receiver starts draining the first piece while
// the next one is copied in; smaller pieces cost more system calls than they
// save (see BenchmarkFrameWrite).
const pieceSize = 32 << 10

// smallFrame is the largest frame a Writer on a socket copies into one pooled
// buffer and writes with one write(2) instead of a vectored write: for small
// frames the copy costs less than the kernel's iovec handling, and the plain
// write path is also far shallower on the goroutine's stack.
const smallFrame = 4 << 10

// streamChunk bounds the memory a Writer on a writer that is not a socket
// (a *tls.Conn, a bufio.Writer) holds for a frame: a frame of up to
// streamChunk bytes goes out in one Write from a pooled buffer of its size;
// a larger one in several Writes that send each of the caller's slices of
// streamChunk bytes or more from where it is, and coalesce the small ones
// (the length field, headers) with the start of the next large one in one
// pooled buffer of streamChunk bytes. (Copying every frame whole into one
// buffer cost a fresh allocation per frame above the pool's largest class.)
// 32 KiB is two TLS records, the BufferedWriter's default buffer and the TCP
// piece size.
const streamChunk = 32 << 10

// NewWriter returns a Writer of frames described by spec to w. Spec.Strip
// does not apply to writing. It fails only if spec is invalid.
//
// On *net.TCPConn and *net.UnixConn a frame larger than 4 KiB goes out as one
// vectored write (writev) of the header and the caller's slices, without
// copying; on *net.TCPConn a frame of 64 KiB or more is cut into several such
// writes of 32 to 64 KiB, which loopback measurements show to be faster than
// one. Smaller frames go out as one Write, assembled in a buffer taken from
// the pool and returned right after (an idle Writer owns no buffer).
//
// On any other writer a frame of up to 32 KiB goes out as one Write from a
// pooled buffer, and a larger one as several Writes, of the caller's large
// slices as they are and of the small ones coalesced in a 32 KiB buffer, so
// that a frame of any size needs at most a 32 KiB buffer and allocates
// nothing (see streamChunk).
func NewWriter(w io.Writer, spec Spec, opts ...Option) (*Writer, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	fw := &Writer{w: w, spec: spec, pool: o.pool, copyMax: streamChunk}
	switch w.(type) {
	case *net.TCPConn, *net.UnixConn:
		fw.writev, fw.copyMax = true, smallFrame
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
// A write error is sticky, except a timeout before any byte was written. A
// Write that reports fewer bytes than it was given and no error fails with
// io.ErrShortWrite.
func (w *Writer) WriteFrame(parts ...[]byte) error {
	// Stack depth matters here: a goroutine that writes and then parks in
	// a read keeps the larger stack a deep write made it grow (see
	// Reader.ReadFrame). So the work around the system calls runs in
	// functions that return before them (begin, assemble, done,
	// startPieces, nextPiece), and the socket's writes are called from this
	// frame.
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := w.begin(parts)
	if err != nil {
		return err
	}
	if f <= int(w.copyMax) {
		buf := w.assemble(parts, f)
		m, err := w.w.Write(*buf)
		return w.done(buf, m, err)
	}
	if !w.writev {
		return w.writeStream(parts)
	}
	for size := w.startPieces(parts, f); w.nextPiece(size); {
		if m, err := w.v.bufs.WriteTo(w.w); err != nil {
			return w.endPieces(err, m > 0)
		}
		w.wrote = true
	}
	return w.endPieces(nil, false)
}

// begin checks the Writer and the frame and puts the frame's length field in
// w.hdr[:w.ln]. It returns the frame's size.
//
//go:noinline
func (w *Writer) begin(parts [][]byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	p := 0
	for _, b := range parts {
		p += len(b)
	}
	v, ln, err := w.spec.lengthValue(p)
	if err != nil {
		return 0, err
	}
	w.spec.putLength(w.hdr[:ln], v)
	w.ln = uint8(ln)
	return p + ln, nil
}

// assemble returns the frame, f bytes, in a buffer from the pool.
//
//go:noinline
func (w *Writer) assemble(parts [][]byte, f int) *[]byte {
	buf := w.pool.Get(f)
	spliceCopy(*buf, parts, w.spec.LengthOffset, w.hdr[:w.ln])
	return buf
}

// done finishes a frame written with one Write of buf, which returned m
// and err.
//
//go:noinline
func (w *Writer) done(buf *[]byte, m int, err error) error {
	f := len(*buf)
	w.pool.Put(buf)
	if err == nil && m < f {
		err = io.ErrShortWrite
	}
	if err != nil {
		return w.writeErr(err, m > 0)
	}
	return nil
}

// spliceVec sets w.v.vecs to the length field and the parts as the slices of
// one vectored write.
func (w *Writer) spliceVec(parts [][]byte) {
	if w.v == nil {
		w.v = new(vectors)
		w.v.vecs = w.v.small[:0]
	}
	w.v.vecs = splice(w.v.vecs[:0], parts, w.spec.LengthOffset, w.hdr[:w.ln])
}

// release drops the Writer's references to the caller's slices.
func (w *Writer) release() {
	clear(w.v.vecs)
	clear(w.v.small[:]) // vecs may have outgrown it, keeping older slices
	w.v.bufs, w.v.cut = nil, nil
}

// startPieces prepares a frame of f bytes for nextPiece and returns the size
// of its pieces: f, or on TCP about w.piece bytes for a large frame.
//
//go:noinline
func (w *Writer) startPieces(parts [][]byte, f int) int {
	w.spliceVec(parts)
	w.pos, w.v.cut, w.wrote = 0, nil, false
	if p := int(w.piece); p > 0 && f >= 2*p {
		k := f / p
		return (f + k - 1) / k
	}
	return f
}

// nextPiece sets w.v.bufs to the next piece of the frame, size bytes or what
// is left, and reports whether there was any. It takes whole slices while
// they fit and cuts the next one, whose remainder (w.v.cut) leads the next
// piece. (bufs.WriteTo consumes the slices it writes, so the remainder is
// kept aside.)
//
//go:noinline
func (w *Writer) nextPiece(size int) bool {
	v := w.v
	vec := v.vecs[w.pos:]
	if len(vec) == 0 {
		return false
	}
	if v.cut != nil {
		vec[0], v.cut = v.cut, nil
	}
	i, left := 0, size
	for i < len(vec) && len(vec[i]) <= left {
		left -= len(vec[i])
		i++
	}
	w.pos += int32(i)
	if i < len(vec) && left > 0 {
		v.cut = vec[i][left:]
		vec[i] = vec[i][:left]
		i++
	}
	v.bufs = vec[:i]
	return true
}

// endPieces finishes a frame written in pieces; err is the error of the
// last piece, which wrote some bytes if partial.
//
//go:noinline
func (w *Writer) endPieces(err error, partial bool) error {
	w.release()
	if err != nil {
		return w.writeErr(err, partial || w.wrote)
	}
	return nil
}

// writeStream writes a frame of more than w.copyMax bytes to a writer that
// is not a socket, with several Writes (see streamChunk).
//
//go:noinline
func (w *Writer) writeStream(parts [][]byte) error {
	w.spliceVec(parts)
	chunk := max(int(w.copyMax), 1)
	var buf *[]byte
	var err error
	wrote := false
	for rest := w.v.vecs; len(rest) > 0; {
		var p []byte
		p, rest = w.nextChunk(rest, chunk, &buf)
		var m int
		m, err = w.w.Write(p)
		if err == nil && m < len(p) {
			err = io.ErrShortWrite
		}
		if err != nil {
			wrote = wrote || m > 0
			break
		}
		wrote = true
	}
	if buf != nil {
		w.pool.Put(buf)
	}
	w.release()
	if err != nil {
		return w.writeErr(err, wrote)
	}
	return nil
}

// nextChunk returns the next bytes of the slices rest to write, and what is
// left after them: the first slice itself if it has chunk bytes or more or
// is the last; otherwise a copy, in *buf, of up to chunk bytes of the
// slices, the small ones whole and the start of a large one. It takes *buf
// from the pool (chunk bytes) when it first needs it.
func (w *Writer) nextChunk(rest [][]byte, chunk int, buf **[]byte) ([]byte, [][]byte) {
	if len(rest[0]) >= chunk || len(rest) == 1 {
		return rest[0], rest[1:]
	}
	if *buf == nil {
		*buf = w.pool.Get(chunk)
	}
	p := (**buf)[:chunk]
	n := 0
	for n < chunk && len(rest) > 0 {
		k := copy(p[n:], rest[0])
		n += k
		if rest[0] = rest[0][k:]; len(rest[0]) == 0 {
			rest = rest[1:]
		}
	}
	return p[:n], rest
}

// writeErr records err, the error of a frame's write, unless it is a
// timeout before any byte went out.
func (w *Writer) writeErr(err error, wrote bool) error {
	if !wrote && errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	w.err = err
	return err
}

// splice appends to vec the parts with lf inserted after the first off bytes,
// splitting a part if needed. It appends no empty slice.
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
