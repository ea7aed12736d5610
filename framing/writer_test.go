package framing

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/stretchr/testify/require"
)

func TestWriterRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  Spec
		parts [][]byte
		err   error
	}{
		{"len1-256", Spec{LengthSize: 1}, [][]byte{make([]byte, 256)}, ErrFrameTooLarge},
		{"len1-255", Spec{LengthSize: 1}, [][]byte{make([]byte, 255)}, nil},
		{"len2-signed", Spec{LengthSize: 2, Signed: true}, [][]byte{make([]byte, 1<<15)}, ErrFrameTooLarge},
		{"max-frame", Spec{LengthSize: 4, MaxFrameSize: 100}, [][]byte{make([]byte, 97)}, ErrFrameTooLarge},
		{"max-frame-ok", Spec{LengthSize: 4, MaxFrameSize: 100}, [][]byte{make([]byte, 96)}, nil},
		{"grpc-no-flag", GRPCMessage, nil, ErrInvalidLength},
		{"memcached-short-header", MemcachedBinary, [][]byte{make([]byte, 7)}, ErrInvalidLength},
		{"memcached-missing-rest", MemcachedBinary, [][]byte{make([]byte, 19)}, ErrInvalidLength}, // value would be -1
		{"mqtt-too-long", Spec{LengthOffset: 1, Kind: MQTTVarint, MaxFrameSize: math.MaxInt32}, mqttTooLong(), ErrFrameTooLarge},
		{"positive-adjustment-short", Spec{LengthSize: 2, Adjustment: 2}, [][]byte{{1}}, ErrInvalidLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, tc.spec)
			require.NoError(t, err)
			err = w.WriteFrame(tc.parts...)
			if tc.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.err)
			require.Zero(t, buf.Len(), "nothing written")
			require.NoError(t, w.WriteFrame(make([]byte, tc.spec.LengthOffset+max0(-tc.spec.Adjustment)+max0(tc.spec.Adjustment))), "not sticky")
		})
	}
}

// failWriter writes at most n bytes, then fails with err.
type failWriter struct {
	n   int
	err error
	buf bytes.Buffer
}

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) <= f.n {
		f.n -= len(p)
		return f.buf.Write(p)
	}
	k := f.n
	f.buf.Write(p[:k])
	f.n = 0
	return k, f.err
}

func TestWriterErrors(t *testing.T) {
	boom := errors.New("boom")
	fw := &failWriter{n: 5, err: boom}
	w, err := NewWriter(fw, Spec{LengthSize: 2})
	require.NoError(t, err)
	require.NoError(t, w.WriteFrame([]byte("abc")))
	require.ErrorIs(t, w.WriteFrame([]byte("abc")), boom)
	require.ErrorIs(t, w.WriteFrame([]byte("abc")), boom, "sticky")

	// A timeout before anything was written is not sticky.
	fw = &failWriter{n: 0, err: os.ErrDeadlineExceeded}
	w, err = NewWriter(fw, Spec{LengthSize: 2})
	require.NoError(t, err)
	require.ErrorIs(t, w.WriteFrame([]byte("abc")), os.ErrDeadlineExceeded)
	fw.n = 100
	require.NoError(t, w.WriteFrame([]byte("abc")))
	require.Equal(t, cat(hx("0003"), []byte("abc")), fw.buf.Bytes())

	// BufferedWriter errors are sticky and the buffer goes back.
	pool := newDebugPool()
	fw = &failWriter{n: 3, err: boom}
	bw, err := NewBufferedWriter(fw, Spec{LengthSize: 2}, 64, WithPool(pool))
	require.NoError(t, err)
	require.NoError(t, bw.WriteFrame([]byte("abc")))
	require.Equal(t, 5, bw.Buffered())
	require.ErrorIs(t, bw.Flush(), boom)
	require.ErrorIs(t, bw.WriteFrame([]byte("abc")), boom)
	require.Zero(t, pool.Stats().InUseBytes)
}

func TestBufferedWriter(t *testing.T) {
	pool := newDebugPool()
	var buf bytes.Buffer
	bw, err := NewBufferedWriter(&buf, GRPCMessage, 64, WithPool(pool))
	require.NoError(t, err)
	require.NoError(t, bw.Flush(), "empty flush")
	require.Zero(t, pool.Stats().InUseBytes, "no buffer before the first frame")
	var want []byte
	for i := range 20 {
		msg := bytes.Repeat([]byte{byte(i)}, i)
		require.NoError(t, bw.WriteFrame([]byte{0}, msg))
		want = append(want, 0, 0, 0, 0, byte(i))
		want = append(want, msg...)
		require.LessOrEqual(t, bw.Buffered(), 64)
	}
	big := bytes.Repeat([]byte{7}, 100) // larger than the buffer: written directly
	require.NoError(t, bw.WriteFrame([]byte{1}, big))
	want = append(want, 1, 0, 0, 0, 100)
	want = append(want, big...)
	require.Zero(t, bw.Buffered())
	require.NoError(t, bw.WriteFrame([]byte{0}))
	want = append(want, 0, 0, 0, 0, 0)
	require.NotZero(t, pool.Stats().InUseBytes)
	require.NoError(t, bw.Flush())
	require.Zero(t, pool.Stats().InUseBytes, "Flush returns the buffer")
	require.Equal(t, want, buf.Bytes())

	// And it reads back.
	r, err := NewReader(&chunkConn{data: buf.Bytes()}, GRPCMessage, WithPool(pool))
	require.NoError(t, err)
	got, err := readAll(t, r)
	require.Equal(t, io.EOF, err)
	require.Len(t, got, 22)
}

func TestWriterZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	pool := bufferpool.NewTiered()
	payload := make([]byte, 1000)
	flag := []byte{0}
	w, err := NewWriter(io.Discard, GRPCMessage, WithPool(pool))
	require.NoError(t, err)
	require.Zero(t, testing.AllocsPerRun(500, func() {
		if err := w.WriteFrame(flag, payload); err != nil {
			panic(err)
		}
	}))
	w.writev = true
	w.copyMax = 0
	var vw bytesBuffersWriter
	w.w = &vw
	vw.Grow(1 << 20)
	require.Zero(t, testing.AllocsPerRun(100, func() {
		if err := w.WriteFrame(flag, payload[:10], payload[10:20], payload[20:]); err != nil {
			panic(err)
		}
	}))
	bw, err := NewBufferedWriter(io.Discard, GRPCMessage, 0, WithPool(pool))
	require.NoError(t, err)
	require.Zero(t, testing.AllocsPerRun(500, func() {
		if err := bw.WriteFrame(flag, payload[:60]); err != nil {
			panic(err)
		}
	}))
}

func TestWriterManyParts(t *testing.T) {
	var vw bytesBuffersWriter
	w, err := NewWriter(&vw, Spec{LengthOffset: 3, LengthSize: 2})
	require.NoError(t, err)
	w.writev = true
	w.copyMax = 0
	var parts [][]byte
	var all []byte
	for i := range 20 {
		p := []byte{byte(i)}
		if i%3 == 0 {
			p = nil
		}
		parts = append(parts, p)
		all = append(all, p...)
	}
	require.NoError(t, w.WriteFrame(parts...))
	want := cat(all[:3], hx("000a"), all[3:])
	require.Equal(t, want, vw.Bytes())
}

// mqttTooLong returns parts totalling 1 + 268435456 bytes without allocating
// them: the same 1 MiB slice 256 times.
func mqttTooLong() [][]byte {
	mib := make([]byte, 1<<20)
	parts := [][]byte{{0x30}}
	for range 256 {
		parts = append(parts, mib)
	}
	return parts
}

// TestWriterPieces checks that a frame cut into several vectored writes
// (large frames on TCP) reaches the wire intact, whatever the cuts.
func TestWriterPieces(t *testing.T) {
	var all []byte
	var parts [][]byte
	for i := range 12 {
		p := bytes.Repeat([]byte{byte(i + 1)}, i%5)
		parts = append(parts, p)
		all = append(all, p...)
	}
	want := cat(all[:3], hx("0012"), all[3:]) // 23 bytes in all
	for piece := 1; piece <= 20; piece++ {
		var vw bytesBuffersWriter
		w, err := NewWriter(&vw, Spec{LengthOffset: 3, LengthSize: 2})
		require.NoError(t, err)
		w.writev = true
		w.copyMax = 0
		w.piece = int32(piece)
		require.NoError(t, w.WriteFrame(parts...))
		require.NoError(t, w.WriteFrame(parts...))
		require.Equal(t, cat(want, want), vw.Bytes(), "piece %d", piece)
		for _, v := range append(w.v.vecs[:cap(w.v.vecs)], w.v.small[:]...) {
			require.Nil(t, v, "caller's memory kept")
		}
		require.Nil(t, w.v.bufs)
		require.Nil(t, w.v.cut)
	}
}

// recordWriter is a plain io.Writer (not a socket) that keeps what it is
// given, or only its length and checksum when discard is set, and the size
// of every Write, and whether it came straight from one of parts.
type recordWriter struct {
	discard bool
	parts   [][]byte
	buf     bytes.Buffer
	n       int
	crc     uint32
	writes  []int
	direct  []bool
}

// within reports whether p lies within one of parts.
func within(p []byte, parts [][]byte) bool {
	if len(p) == 0 {
		return false
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	for _, q := range parts {
		if len(q) == 0 {
			continue
		}
		b := uintptr(unsafe.Pointer(unsafe.SliceData(q)))
		if a >= b && a+uintptr(len(p)) <= b+uintptr(len(q)) {
			return true
		}
	}
	return false
}

func (r *recordWriter) Write(p []byte) (int, error) {
	r.writes = append(r.writes, len(p))
	r.direct = append(r.direct, within(p, r.parts))
	r.n += len(p)
	if r.discard {
		r.crc = crc32.Update(r.crc, crc32.IEEETable, p)
		return len(p), nil
	}
	return r.buf.Write(p)
}

// TestWriterStreamsLargeFramesWithoutAllocs writes frames far above the
// pool's largest class through a writer that is not a socket: the small
// parts go out coalesced with the start of the payload in one 32 KiB
// pooled buffer, the rest of the payload from where it is, the bytes are
// right, and a frame costs no allocation (before, each such frame was copied
// whole into a fresh buffer of its size).
func TestWriterStreamsLargeFramesWithoutAllocs(t *testing.T) {
	const size = 16 << 20 // the default pool's largest class is 1 MiB
	spec := Spec{LengthOffset: 1, LengthSize: 4, MaxFrameSize: 64 << 20}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	// A type byte, a short header, and the payload in three slices.
	parts := [][]byte{{0x42}, []byte("head"), payload[:100], payload[100 : 3<<20], payload[3<<20:]}
	want := crc32.Update(crc32.ChecksumIEEE(hx("42 01000004")), crc32.IEEETable, []byte("head"))
	want = crc32.Update(want, crc32.IEEETable, payload)

	pool := bufferpool.NewTiered()
	rw := &recordWriter{discard: true, parts: parts}
	w, err := NewWriter(rw, spec, WithPool(pool))
	require.NoError(t, err)
	require.False(t, w.writev)
	require.NoError(t, w.WriteFrame(parts...))
	require.Equal(t, 1+4+4+size, rw.n)
	require.Equal(t, want, rw.crc, "bytes on the wire")
	require.Equal(t, []int{streamChunk, 3<<20 - 100 - (streamChunk - 109), size - 3<<20}, rw.writes)
	require.Equal(t, []bool{false, true, true}, rw.direct)
	require.Zero(t, pool.Stats().InUseBytes)
	require.Equal(t, uint64(1), pool.Stats().Gets, "one 32 KiB buffer")

	// Memory: bytes allocated per frame are bounded by one chunk (a pool
	// refill), not the frame.
	const runs = 5
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		rw.writes, rw.direct = rw.writes[:0], rw.direct[:0]
		require.NoError(t, w.WriteFrame(parts...))
	}
	runtime.ReadMemStats(&after)
	perFrame := (after.TotalAlloc - before.TotalAlloc) / runs
	t.Logf("%d B allocated per %d MiB frame", perFrame, size>>20)
	require.LessOrEqual(t, perFrame, uint64(streamChunk+4<<10))
	if !raceEnabled {
		require.Zero(t, testing.AllocsPerRun(runs, func() {
			rw.writes, rw.direct = rw.writes[:0], rw.direct[:0]
			if err := w.WriteFrame(parts...); err != nil {
				panic(err)
			}
		}))
	}
}

// TestWriterStreamPieces writes every fixture, twice, to a plain writer
// with coalescing buffers of many sizes up to the frame's: the bytes are
// the fixture's, every Write either comes straight from one of the parts
// (or the length field) or is at most the buffer's size, and one buffer is
// taken per frame at most.
func TestWriterStreamPieces(t *testing.T) {
	for _, fx := range fixtures() {
		if fx.write == nil {
			continue
		}
		f := len(fx.wire)
		chunks := []int{1, 2, 3, 4, 5, 6, 7, 9, 11, 16, 24, f - 1, f, f + 1}
		if f > 1024 {
			chunks = []int{1000, 4097, f - 1, f, f + 1}
		}
		for _, chunk := range chunks {
			if chunk < 1 {
				continue
			}
			pool := newDebugPool()
			rw := &recordWriter{}
			w, err := NewWriter(rw, fx.spec, WithPool(pool))
			require.NoError(t, err)
			rw.parts = append(slices.Clone(fx.write), w.hdr[:]) // the length field too
			w.copyMax = int32(chunk)
			require.NoError(t, w.WriteFrame(fx.write...))
			require.NoError(t, w.WriteFrame(fx.write...))
			require.Equal(t, cat(fx.wire, fx.wire), rw.buf.Bytes(), "%s, chunk %d", fx.name, chunk)
			for i, n := range rw.writes {
				require.True(t, rw.direct[i] || n <= chunk, "%s, chunk %d: write %d of %d bytes", fx.name, chunk, i, n)
			}
			require.LessOrEqual(t, pool.Stats().Gets, uint64(2))
			require.Zero(t, pool.Stats().InUseBytes)
			if len(fx.wire) <= chunk {
				require.Nil(t, w.v, "%s, chunk %d: a frame copied whole made vectors", fx.name, chunk)
				continue
			}
			require.NotNil(t, w.v, "%s, chunk %d", fx.name, chunk)
			for _, v := range append(w.v.vecs[:cap(w.v.vecs)], w.v.small[:]...) {
				require.Nil(t, v, "caller's memory kept")
			}
		}
	}
}

// shortWriter accepts at most n bytes per Write and reports no error.
type shortWriter struct{ n int }

func (s shortWriter) Write(p []byte) (int, error) { return min(len(p), s.n), nil }

// TestWriterStreamErrors checks the errors of a frame written in pieces: a
// timeout before the first byte is not sticky, any error after it is, and a
// Write that stops short without an error is io.ErrShortWrite.
func TestWriterStreamErrors(t *testing.T) {
	boom := errors.New("boom")
	frame := make([]byte, 100)
	for _, tc := range []struct {
		name   string
		n      int // bytes the writer accepts before it fails
		err    error
		sticky bool
	}{
		{"timeout-before-any-byte", 0, os.ErrDeadlineExceeded, false},
		{"timeout-in-first-piece", 3, os.ErrDeadlineExceeded, true},
		{"timeout-after-first-piece", 40, os.ErrDeadlineExceeded, true},
		{"error-before-any-byte", 0, boom, true},
		{"error-in-third-piece", 70, boom, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newDebugPool()
			fw := &failWriter{n: tc.n, err: tc.err}
			w, err := NewWriter(fw, Spec{LengthSize: 2}, WithPool(pool))
			require.NoError(t, err)
			w.copyMax = 34 // 102 bytes: three pieces of 34
			require.ErrorIs(t, w.WriteFrame(frame[:50], frame[50:]), tc.err)
			require.Equal(t, tc.n, fw.buf.Len())
			require.Zero(t, pool.Stats().InUseBytes)
			fw.n = 1000
			if tc.sticky {
				require.ErrorIs(t, w.WriteFrame(frame), tc.err)
				require.Equal(t, tc.n, fw.buf.Len())
			} else {
				require.NoError(t, w.WriteFrame(frame))
				require.Equal(t, cat(hx("0064"), frame), fw.buf.Bytes())
			}
		})
	}
	for _, copyMax := range []int32{streamChunk, 34} {
		w, err := NewWriter(shortWriter{10}, Spec{LengthSize: 2})
		require.NoError(t, err)
		w.copyMax = copyMax
		require.ErrorIs(t, w.WriteFrame(frame), io.ErrShortWrite)
		require.ErrorIs(t, w.WriteFrame(frame), io.ErrShortWrite, "sticky")
	}
}
