package framing

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/stretchr/testify/require"
)

// frames4 returns n frames with a 4-byte big-endian length (stripped),
// frame i carrying size bytes of value byte(i+1), concatenated.
func frames4(n, size int) []byte {
	var out []byte
	for i := range n {
		out = binary.BigEndian.AppendUint32(out, uint32(size))
		out = append(out, bytes.Repeat([]byte{byte(i + 1)}, size)...)
	}
	return out
}

var spec4 = Spec{LengthSize: 4, Strip: 4, MaxFrameSize: 1 << 20}

// TestSharedReleaseOrder: frames from one well-filled read are slices of the
// read buffer; it goes back to the pool exactly when the last of them is
// released, in any order, and each frame's bytes stay intact until its own
// Release.
func TestSharedReleaseOrder(t *testing.T) {
	const n, size, readSize = 8, 100, 1024
	stream := frames4(n, size) // 832 bytes: fills more than half of 1 KiB
	orders := map[string][]int{
		"forward": {0, 1, 2, 3, 4, 5, 6, 7},
		"reverse": {7, 6, 5, 4, 3, 2, 1, 0},
		"mixed":   {3, 0, 7, 1, 6, 2, 5, 4},
	}
	for range 5 {
		orders[fmt.Sprint("random", len(orders))] = rand.Perm(n)
	}
	for name, order := range orders {
		for _, debug := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/debug=%v", name, debug), func(t *testing.T) {
				pool := bufferpool.NewTiered()
				if debug {
					pool = newDebugPool()
				}
				r, err := NewReader(&chunkConn{data: stream}, spec4, WithPool(pool), WithReadSize(readSize))
				require.NoError(t, err)
				readBuf := int64(pool.ClassSize(readSize))
				fs := make([]Frame, n)
				for i := range fs {
					fs[i], err = r.ReadFrame()
					require.NoError(t, err)
					require.Equal(t, bytes.Repeat([]byte{byte(i + 1)}, size), fs[i].Bytes())
					// The read buffer and nothing else: no copies.
					require.Equal(t, readBuf, pool.Stats().InUseBytes, "after frame %d", i)
					require.Equal(t, int64(1), pool.Stats().InUseBuffers)
				}
				for k, i := range order {
					require.Equal(t, readBuf, pool.Stats().InUseBytes, "before release %d", k)
					fs[i].Release()
					require.Nil(t, fs[i].Bytes())
					for _, j := range order[k+1:] {
						require.Equal(t, bytes.Repeat([]byte{byte(j + 1)}, size), fs[j].Bytes(), "frame %d after releasing %d", j, i)
					}
				}
				require.Zero(t, pool.Stats().InUseBytes, "returned with the last frame")
				_, err = r.ReadFrame()
				require.Equal(t, io.EOF, err)
			})
		}
	}
}

// TestSharedReleaseBeforeReaderDone: frames released while the Reader still
// reads from the buffer; the Reader returns it when it is consumed.
func TestSharedReleaseBeforeReaderDone(t *testing.T) {
	const n, size, readSize = 8, 100, 1024
	pool := newDebugPool()
	// Eight frames and the first 50 bytes of a ninth in one read.
	stream := frames4(9, size)[:8*(4+size)+50]
	c := &chunkConn{data: stream, final: os.ErrDeadlineExceeded}
	r, err := NewReader(c, spec4, WithPool(pool), WithReadSize(readSize))
	require.NoError(t, err)
	readBuf := int64(pool.ClassSize(readSize))
	partial := int64(pool.ClassSize(size)) // the partial frame's buffer, sized to the frame
	var last Frame
	for i := range n {
		f, err := r.ReadFrame()
		require.NoError(t, err)
		require.Equal(t, byte(i+1), f.Bytes()[0])
		if i < n-1 {
			f.Release()
			require.Equal(t, readBuf, pool.Stats().InUseBytes, "reader still holds frames")
		} else {
			last = f
		}
	}
	// The partial frame was moved out; the read buffer lives on for last.
	require.Equal(t, readBuf+partial, pool.Stats().InUseBytes)
	last.Release()
	require.Equal(t, partial, pool.Stats().InUseBytes, "only the partial frame")
	_, err = r.ReadFrame()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Equal(t, partial, pool.Stats().InUseBytes, "parked with the partial frame only")
	r.Release()
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestSharedOnlyWhenFilled: a read that fills less than half of its buffer
// yields frames with their own right-sized buffers, so an unreleased frame
// does not keep the read buffer.
func TestSharedOnlyWhenFilled(t *testing.T) {
	pool := bufferpool.NewTiered()
	stream := frames4(3, 100) // 312 bytes in a 32 KiB buffer
	r, err := NewReader(&chunkConn{data: stream}, spec4, WithPool(pool))
	require.NoError(t, err)
	f, err := r.ReadFrame()
	require.NoError(t, err)
	g, err := r.ReadFrame()
	require.NoError(t, err)
	h, err := r.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, int64(3*pool.ClassSize(100)), pool.Stats().InUseBytes)
	f.Release()
	g.Release()
	h.Release()
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestSharedAcrossReads: frames held across reads keep their own read
// buffers; each buffer is returned when its last frame is released.
func TestSharedAcrossReads(t *testing.T) {
	const size, readSize = 100, 1024
	pool := newDebugPool()
	per := 8 * (4 + size)
	stream := frames4(24, size)
	r, err := NewReader(&chunkConn{data: stream, chunks: []int{per}}, spec4, WithPool(pool), WithReadSize(readSize))
	require.NoError(t, err)
	readBuf := int64(pool.ClassSize(readSize))
	var fs []Frame
	for i := range 24 {
		f, err := r.ReadFrame()
		require.NoError(t, err)
		fs = append(fs, f)
		require.Equal(t, int64(i/8+1)*readBuf, pool.Stats().InUseBytes, "frame %d", i)
	}
	// Release one frame of each buffer but the last: nothing returns.
	for b := range 3 {
		for i := range 7 {
			fs[8*b+i].Release()
		}
	}
	require.Equal(t, 3*readBuf, pool.Stats().InUseBytes)
	for b := range 3 {
		fs[8*b+7].Release()
		require.Equal(t, int64(2-b)*readBuf, pool.Stats().InUseBytes)
	}
	r.Release()
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestSharedReaderReleaseWithFramesOut: Reader.Release while frames of its
// buffer are out leaves the buffer to them.
func TestSharedReaderReleaseWithFramesOut(t *testing.T) {
	pool := newDebugPool()
	r, err := NewReader(&chunkConn{data: frames4(8, 100)}, spec4, WithPool(pool), WithReadSize(1024))
	require.NoError(t, err)
	f, err := r.ReadFrame()
	require.NoError(t, err)
	r.Release()
	require.Equal(t, bytes.Repeat([]byte{1}, 100), f.Bytes())
	require.Equal(t, int64(pool.ClassSize(1024)), pool.Stats().InUseBytes)
	f.Release()
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestSharedDoubleRelease: releasing a copy of a released shared frame
// panics at once with a debug pool, and without one at the latest when the
// last frame of the buffer is released; the buffer is returned once.
func TestSharedDoubleRelease(t *testing.T) {
	stream := frames4(8, 100)
	t.Run("debug", func(t *testing.T) {
		pool := newDebugPool()
		r, err := NewReader(&chunkConn{data: stream}, spec4, WithPool(pool), WithReadSize(1024))
		require.NoError(t, err)
		f, err := r.ReadFrame()
		require.NoError(t, err)
		b := f.Bytes()
		g := f
		f.Release()
		require.Equal(t, strings.Repeat(bufferpool.Poison, 25), string(b), "released bytes are poisoned")
		require.PanicsWithValue(t, errDoubleRelease, g.Release)
		// The rest still works.
		got, err := readAll(t, r)
		require.Equal(t, io.EOF, err)
		require.Len(t, got, 7)
		require.Equal(t, bytes.Repeat([]byte{8}, 100), got[6])
		require.Zero(t, pool.Stats().InUseBytes)
	})
	t.Run("plain", func(t *testing.T) {
		pool := bufferpool.NewTiered()
		r, err := NewReader(&chunkConn{data: stream}, spec4, WithPool(pool), WithReadSize(1024))
		require.NoError(t, err)
		var fs []Frame
		for range 8 {
			f, err := r.ReadFrame()
			require.NoError(t, err)
			fs = append(fs, f)
		}
		g := fs[0]
		fs[0].Release()
		g.Release() // undetected for now: the count is off by one
		panicked := false
		for _, f := range fs[1:] {
			func() {
				defer func() { panicked = panicked || recover() != nil }()
				f.Release()
			}()
		}
		require.True(t, panicked, "a later Release panics")
		st := pool.Stats()
		require.Zero(t, st.InUseBytes, "returned exactly once")
		require.Equal(t, st.Gets, st.Puts)
	})
	t.Run("own buffer", func(t *testing.T) {
		pool := bufferpool.NewTiered()
		r, err := NewReader(&chunkConn{data: frames4(1, 100)}, spec4, WithPool(pool))
		require.NoError(t, err)
		f, err := r.ReadFrame()
		require.NoError(t, err)
		g := f
		f.Release()
		require.PanicsWithValue(t, errDoubleRelease, g.Release)
		require.Zero(t, pool.Stats().InUseBytes)
	})
}

// TestSharedConcurrentRelease: frames released on other goroutines, in any
// order, while the Reader reads on (run with -race).
func TestSharedConcurrentRelease(t *testing.T) {
	pool := bufferpool.NewTiered()
	const n, size = 5000, 60
	stream := frames4(n, size)
	r, err := NewReader(&chunkConn{data: stream, chunks: []int{3000, 1000, 7000}}, spec4, WithPool(pool), WithReadSize(4096))
	require.NoError(t, err)
	ch := make(chan Frame, 64)
	var wg sync.WaitGroup
	bad := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range ch {
				b := f.Bytes()
				if len(b) != size || b[0] != b[size-1] {
					select {
					case bad <- fmt.Sprintf("frame %x", b):
					default:
					}
				}
				f.Release()
			}
		}()
	}
	for i := range n {
		f, err := r.ReadFrame()
		require.NoError(t, err)
		require.Equal(t, byte(i+1), f.Bytes()[0])
		ch <- f
	}
	close(ch)
	wg.Wait()
	close(bad)
	for s := range bad {
		t.Error(s)
	}
	_, err = r.ReadFrame()
	require.Error(t, err)
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestSharedZeroAllocs: the shared path allocates nothing, also when a frame
// is held across reads (descriptors are recycled).
func TestSharedZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, size := range []int{64, 1 << 10, 10 << 10} {
		frame := make([]byte, 4+size)
		binary.BigEndian.PutUint32(frame, uint32(size))
		stream := bytes.Repeat(frame, max(1, (100<<10)/len(frame)))
		for _, holdPrev := range []bool{false, true} {
			t.Run(fmt.Sprintf("size=%d/hold=%v", size, holdPrev), func(t *testing.T) {
				pool := bufferpool.NewTiered()
				r, err := NewReader(&loopConn{data: stream}, spec4, WithPool(pool))
				require.NoError(t, err)
				var prev Frame
				read := func() {
					f, err := r.ReadFrame()
					if err != nil || f.Len() != size {
						panic(err)
					}
					if holdPrev {
						prev.Release()
						prev = f
						return
					}
					f.Release()
				}
				for range 2000 {
					read()
				}
				require.Zero(t, testing.AllocsPerRun(2000, read))
				prev.Release()
				r.Release()
				require.Zero(t, pool.Stats().InUseBytes)
			})
		}
	}
}
