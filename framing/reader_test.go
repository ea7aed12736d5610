package framing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/stretchr/testify/require"
)

// recPool records the largest Get.
type recPool struct {
	bufferpool.Pool
	maxGet int
}

func (p *recPool) Get(n int) *[]byte {
	p.maxGet = max(p.maxGet, n)
	return p.Pool.Get(n)
}

// probeConn records, each time the Reader waits for bytes, how much pool
// memory it holds and how many bytes it had been given.
type probeConn struct {
	chunkConn
	pool      *bufferpool.Tiered
	delivered int
	held      []int64
	given     []int
}

func (p *probeConn) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	p.held = append(p.held, p.pool.Stats().InUseBytes)
	p.given = append(p.given, p.delivered)
	buf, n, err := p.chunkConn.ReadOnReady(size, pool)
	p.delivered += n
	return buf, n, err
}

// TestStalledPeerMemory: a peer announces a 100 MiB frame and trickles
// bytes; the Reader's memory follows what arrived, not what was announced.
func TestStalledPeerMemory(t *testing.T) {
	for _, chunk := range []int{1000, 7777, 40000} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			pool := bufferpool.NewTiered()
			stream := cat(hx("06400000"), rep(9, 3<<20)) // announces 100 MiB, sends 3 MiB
			c := &probeConn{chunkConn: chunkConn{data: stream, chunks: []int{chunk}}, pool: pool}
			rp := &recPool{Pool: pool}
			r, err := NewReader(c, Kafka, WithPool(rp))
			require.NoError(t, err)
			_, err = r.ReadFrame()
			require.ErrorIs(t, err, io.ErrUnexpectedEOF)
			require.Equal(t, int64(0), c.held[0], "nothing held before the first byte")
			for i := range c.held {
				bound := int64(pool.ClassSize(max(minChunk, 2*c.given[i])))
				require.LessOrEqual(t, c.held[i], bound, "wait %d after %d bytes", i, c.given[i])
			}
			require.Less(t, rp.maxGet, 8<<20, "largest Get")
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

func TestTooLargeBeforeAllocation(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		hdr  []byte
	}{
		{Kafka, hx("7fffffff")},
		{Spec{LengthSize: 8}, hx("7fffffffffffffff")},
		{Spec{LengthSize: 4, MaxFrameSize: 1000}, hx("000003e5")}, // 4+997 = 1001
		{MQTT, hx("30 ffffff7f")},
	} {
		spec := tc.spec
		if spec.Kind == MQTTVarint {
			spec.MaxFrameSize = 1 << 20
		}
		rp := &recPool{Pool: bufferpool.NewTiered()}
		r, err := NewReader(&chunkConn{data: cat(tc.hdr, rep(0, 100))}, spec, WithPool(rp), WithReadSize(64))
		require.NoError(t, err)
		_, err = r.ReadFrame()
		require.ErrorIs(t, err, ErrFrameTooLarge)
		require.LessOrEqual(t, rp.maxGet, 64)
		// Sticky, and nothing held.
		_, err2 := r.ReadFrame()
		require.Equal(t, err, err2)
	}
	// Exactly at the limit is fine.
	r, err := NewReader(&chunkConn{data: cat(hx("000003e4"), rep(1, 996))}, Spec{LengthSize: 4, MaxFrameSize: 1000})
	require.NoError(t, err)
	f, err := r.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, 1000, f.Len())
	f.Release()
}

func TestDebugPoolCatchesMisuse(t *testing.T) {
	pool := newDebugPool()
	r, err := NewReader(&chunkConn{data: cat(hx("0005"), []byte("hello"), hx("0003"), []byte("abc"))}, Spec{LengthSize: 2, Strip: 2}, WithPool(pool))
	require.NoError(t, err)
	f, err := r.ReadFrame()
	require.NoError(t, err)
	b := f.Bytes()
	require.Equal(t, "hello", string(b))
	g := f // a copy
	f.Release()
	require.Nil(t, f.Bytes())
	f.Release() // same variable: no-op
	require.Equal(t, strings.Repeat(bufferpool.Poison, 2)[:len(b)], string(b), "released memory is poisoned")
	require.Panics(t, g.Release, "double Release through a copy")

	f, err = r.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, "abc", string(f.Bytes()))
	f.Release()
	_, err = r.ReadFrame()
	require.Equal(t, io.EOF, err)
	require.Zero(t, pool.Stats().InUseBytes)
}

func TestReadFrameIntoNeverStale(t *testing.T) {
	spec := Spec{LengthSize: 1, Strip: 1}
	stream := cat(hx("06"), []byte("abcdef"), hx("00"), hx("02"), []byte("xy"), hx("05"), []byte("tr"))
	for _, chunks := range [][]int{nil, {1}, {2, 5}} {
		r, err := NewReader(&chunkConn{data: stream, chunks: chunks}, spec, WithPool(newDebugPool()))
		require.NoError(t, err)
		dst := make([]byte, 3, 4)
		copy(dst, "OLD")
		dst, err = r.ReadFrameInto(dst)
		require.NoError(t, err)
		require.Equal(t, "abcdef", string(dst))
		dst, err = r.ReadFrameInto(dst)
		require.NoError(t, err)
		require.Empty(t, dst)
		dst, err = r.ReadFrameInto(dst)
		require.NoError(t, err)
		require.Equal(t, "xy", string(dst))
		p := &dst[0]
		dst, err = r.ReadFrameInto(dst)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
		require.Empty(t, dst)
		require.Same(t, p, &dst[:1][0], "result is based on dst")
	}
}

// errConn returns the given errors (with no bytes) at the given delivery
// indexes, and data otherwise.
type errConn struct {
	chunkConn
	at map[int]error
	n  int
}

func (c *errConn) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	c.n++
	if err, ok := c.at[c.n]; ok {
		return nil, 0, err
	}
	return c.chunkConn.ReadOnReady(size, pool)
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestErrors(t *testing.T) {
	stream := cat(hx("0005"), []byte("hello"), hx("0003"), []byte("abc"))
	spec := Spec{LengthSize: 2, Strip: 2}
	for _, tc := range []struct {
		name   string
		err    error
		sticky bool
	}{
		{"deadline", os.ErrDeadlineExceeded, false},
		{"net-timeout", timeoutErr{}, false},
		{"closed", net.ErrClosed, true},
		{"reset", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, true},
	} {
		for _, at := range []int{1, 2, 3, 4} { // before the frame, inside it, ...
			t.Run(fmt.Sprintf("%s/at%d", tc.name, at), func(t *testing.T) {
				pool := newDebugPool()
				c := &errConn{chunkConn: chunkConn{data: stream, chunks: []int{3}}, at: map[int]error{at: tc.err}}
				r, err := NewReader(c, spec, WithPool(pool), WithReadSize(64))
				require.NoError(t, err)
				var got []string
				var errs []error
				for range 6 {
					f, err := r.ReadFrame()
					if err != nil {
						errs = append(errs, err)
						if err == io.EOF {
							break
						}
						continue
					}
					got = append(got, string(f.Bytes()))
					f.Release()
				}
				require.ErrorIs(t, errs[0], tc.err)
				if tc.sticky {
					for _, e := range errs {
						require.Equal(t, tc.err, e)
					}
					require.Zero(t, pool.Stats().InUseBytes)
				} else {
					require.Equal(t, []string{"hello", "abc"}, got, "a timeout loses nothing")
					require.Equal(t, io.EOF, errs[len(errs)-1])
				}
				require.Zero(t, pool.Stats().InUseBytes)
			})
		}
	}
}

// emptyConn returns (0, nil) k times before each chunk.
type emptyConn struct {
	chunkConn
	k, n int
}

func (c *emptyConn) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if c.n < c.k {
		c.n++
		return nil, 0, nil
	}
	c.n = 0
	return c.chunkConn.ReadOnReady(size, pool)
}

func TestNoProgress(t *testing.T) {
	stream := cat(hx("0003"), []byte("abc"))
	r, err := NewReader(&emptyConn{chunkConn: chunkConn{data: stream, chunks: []int{2}}, k: 5}, Spec{LengthSize: 2})
	require.NoError(t, err)
	f, err := r.ReadFrame()
	require.NoError(t, err)
	f.Release()
	r, err = NewReader(&emptyConn{chunkConn: chunkConn{data: stream}, k: 1000}, Spec{LengthSize: 2})
	require.NoError(t, err)
	_, err = r.ReadFrame()
	require.ErrorIs(t, err, io.ErrNoProgress)
}

func TestReaderRelease(t *testing.T) {
	pool := newDebugPool()
	stream := cat(hx("0003"), []byte("abc"), hx("0003"), []byte("de"))
	for _, chunks := range [][]int{nil, {len(stream) - 1}} {
		r, err := NewReader(&chunkConn{data: stream, chunks: chunks}, Spec{LengthSize: 2}, WithPool(pool))
		require.NoError(t, err)
		f, err := r.ReadFrame()
		require.NoError(t, err)
		f.Release()
		require.NotZero(t, pool.Stats().InUseBytes, "partial frame held")
		r.Release()
		require.Zero(t, pool.Stats().InUseBytes)
		_, err = r.ReadFrame()
		require.ErrorIs(t, err, ErrReleased)
		require.ErrorIs(t, err, net.ErrClosed)
	}
}

// TestCompaction: after a frame is handed out, a partial frame left in the
// read buffer is moved to right-sized memory; the read buffer is not pinned.
func TestCompaction(t *testing.T) {
	pool := bufferpool.NewTiered()
	stream := cat(hx("0003"), []byte("abc"), hx("0003"), []byte("d"))
	r, err := NewReader(&chunkConn{data: stream, final: os.ErrDeadlineExceeded}, Spec{LengthSize: 2}, WithPool(pool))
	require.NoError(t, err)
	f, err := r.ReadFrame()
	require.NoError(t, err)
	// The frame (3 bytes) and the partial frame (1 of 5 bytes, in a buffer
	// sized for the frame), not the 32 KiB read buffer.
	require.Equal(t, int64(pool.ClassSize(3)+pool.ClassSize(5)), pool.Stats().InUseBytes)
	f.Release()
	_, err = r.ReadFrame()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Equal(t, int64(pool.ClassSize(5)), pool.Stats().InUseBytes)
	r.Release()
}

// loopConn serves the same stream forever.
type loopConn struct {
	data []byte
	off  int
}

func (c *loopConn) Read(p []byte) (int, error) { panic("unused") }

func (c *loopConn) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	buf := pool.Get(size)
	n := copy(*buf, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return buf, n, nil
}

func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, size := range []int{0, 64, 1000, 1 << 10, 20000, 64 << 10, 300 << 10} {
		frame := make([]byte, 4+size)
		binary.BigEndian.PutUint32(frame, uint32(size))
		stream := bytes.Repeat(frame, max(1, (100<<10)/len(frame)))
		for _, into := range []bool{false, true} {
			t.Run(fmt.Sprintf("size=%d/into=%v", size, into), func(t *testing.T) {
				pool := bufferpool.NewTiered()
				r, err := NewReader(&loopConn{data: stream}, Spec{LengthSize: 4, Strip: 4, MaxFrameSize: 1 << 20}, WithPool(pool))
				require.NoError(t, err)
				dst := make([]byte, 0, size)
				read := func() {
					if into {
						dst, err = r.ReadFrameInto(dst)
						if err != nil || len(dst) != size {
							panic(err)
						}
						return
					}
					f, err := r.ReadFrame()
					if err != nil || f.Len() != size {
						panic(err)
					}
					f.Release()
				}
				for range 200 { // warm the pool
					read()
				}
				allocs := testing.AllocsPerRun(500, read)
				require.Zero(t, allocs)
			})
		}
	}
}

func TestNewReaderRejectsBadSpec(t *testing.T) {
	_, err := NewReader(&chunkConn{}, Spec{})
	require.ErrorIs(t, err, ErrInvalidSpec)
	_, err = NewWriter(io.Discard, Spec{LengthSize: 5})
	require.ErrorIs(t, err, ErrInvalidSpec)
}
