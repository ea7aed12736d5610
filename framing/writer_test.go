package framing

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"testing"

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
		w.piece = piece
		require.NoError(t, w.WriteFrame(parts...))
		require.NoError(t, w.WriteFrame(parts...))
		require.Equal(t, cat(want, want), vw.Bytes(), "piece %d", piece)
		for _, v := range w.vec {
			require.Nil(t, v, "caller's memory kept")
		}
	}
}
