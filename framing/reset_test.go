package framing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
)

// TestReset resets a Reader in every state it can be in between calls and
// checks that it then reads the new stream as a new Reader would, that the
// memory of the old stream goes back, and that Frames handed out before the
// Reset stay intact until their Release (the debug pool poisons memory that
// goes back early).
func TestReset(t *testing.T) {
	next := frames4(3, 10) // what the Reader reads after the Reset
	for _, tc := range []struct {
		name   string
		old    []byte // the stream before the Reset
		chunks []int
		final  error // after old
		reads  int   // frames read (and kept) from old before the Reset
		share  bool  // frames share their read buffer
	}{
		{name: "new", old: nil},
		{name: "between-frames", old: frames4(2, 10), reads: 2},
		{name: "frames-read-ahead", old: frames4(5, 10), reads: 2},
		{name: "frames-read-ahead-shared", old: frames4(5, 10), reads: 2, share: true},
		{name: "partial-header", old: cat(frames4(1, 10), hx("0000")), chunks: []int{16}, final: os.ErrDeadlineExceeded, reads: 1},
		{name: "partial-frame", old: cat(frames4(1, 10), hx("00000064 0102")), chunks: []int{14, 6}, final: os.ErrDeadlineExceeded, reads: 1},
		{name: "partial-frame-shared", old: cat(frames4(2, 10), hx("00000064 0102")), final: os.ErrDeadlineExceeded, reads: 2, share: true},
		{name: "after-eof", old: frames4(1, 10), reads: 1, final: io.EOF},
		{name: "after-unexpected-eof", old: hx("00000064 01"), final: io.EOF},
		{name: "after-bad-length", old: hx("ffffffff"), final: io.EOF},
		{name: "after-conn-error", old: frames4(1, 10), reads: 1, final: errors.New("boom")},
		{name: "after-release", old: frames4(3, 10), reads: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newDebugPool()
			r, err := NewReader(&chunkConn{data: tc.old, chunks: tc.chunks, final: tc.final}, spec4, WithPool(pool))
			require.NoError(t, err)
			r.shareAll = tc.share
			var kept []Frame
			for i := range tc.reads {
				f, err := r.ReadFrame()
				require.NoError(t, err)
				require.Equal(t, bytes.Repeat([]byte{byte(i + 1)}, 10), f.Bytes())
				kept = append(kept, f)
			}
			if tc.final != nil || tc.old != nil && tc.reads == 0 {
				// Run into the end of the old stream.
				_, err = r.ReadFrame()
				require.Error(t, err)
			}
			if tc.name == "after-release" {
				r.Release()
			}
			held := int64(0)
			for _, f := range kept {
				if f.c != nil && f.c.refs.Load() == 1 {
					held += int64(cap(*f.c.buf)) // a buffer of its own
				}
			}

			r.Reset(&chunkConn{data: next})
			if !tc.share {
				require.Equal(t, held, pool.Stats().InUseBytes, "only the kept Frames' memory is held")
			}
			got, err := readAll(t, r)
			require.Equal(t, io.EOF, err)
			require.Len(t, got, 3)
			for i, b := range got {
				require.Equal(t, bytes.Repeat([]byte{byte(i + 1)}, 10), b)
			}
			for i, f := range kept {
				require.Equal(t, bytes.Repeat([]byte{byte(i + 1)}, 10), f.Bytes(), "a Frame from before the Reset")
				f.Release()
			}
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

// TestResetSharedBufferOutlives checks that a read buffer shared by Frames
// from before a Reset goes back to the pool when the last of them is
// released, not at the Reset, and not twice.
func TestResetSharedBufferOutlives(t *testing.T) {
	for _, debug := range []bool{false, true} {
		t.Run(fmt.Sprint("debug=", debug), func(t *testing.T) {
			pool := bufferpool.NewTiered()
			if debug {
				pool = newDebugPool()
			}
			const readSize = 1024
			r, err := NewReader(&chunkConn{data: frames4(8, 100)}, spec4, WithPool(pool), WithReadSize(readSize))
			require.NoError(t, err)
			a, err := r.ReadFrame()
			require.NoError(t, err)
			b, err := r.ReadFrame()
			require.NoError(t, err)
			require.NotNil(t, a.c)
			require.Same(t, a.c, b.c, "both Frames share the read buffer")
			readBuf := int64(pool.ClassSize(readSize))
			require.Equal(t, readBuf, pool.Stats().InUseBytes)

			r.Reset(&chunkConn{data: frames4(1, 100)})
			require.Equal(t, readBuf, pool.Stats().InUseBytes, "kept by the Frames")
			f, err := r.ReadFrame()
			require.NoError(t, err)
			require.Equal(t, bytes.Repeat([]byte{1}, 100), f.Bytes())
			f.Release()
			require.Equal(t, readBuf, pool.Stats().InUseBytes)
			a.Release()
			require.Equal(t, readBuf, pool.Stats().InUseBytes)
			require.Equal(t, bytes.Repeat([]byte{2}, 100), b.Bytes())
			b.Release()
			require.Zero(t, pool.Stats().InUseBytes)
			_, err = r.ReadFrame()
			require.Equal(t, io.EOF, err)
		})
	}
}

// TestResetTCP moves a Reader from one connection to another: it then waits
// on the new one without a buffer, and reads from it only.
func TestResetTCP(t *testing.T) {
	pool := bufferpool.NewTiered()
	c1, s1 := testnet.TCPPair(t)
	c2, s2 := testnet.TCPPair(t)
	r, err := NewReader(s1, kafkaNoStrip, WithPool(pool))
	require.NoError(t, err)
	_, err = c1.Write(cat(frames4(1, 5), hx("00000010 01")))
	require.NoError(t, err)
	f, err := r.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, bytes.Repeat([]byte{1}, 5), f.Bytes())
	f.Release()
	require.Positive(t, pool.Stats().InUseBytes, "the partial frame that came with it")

	r.Reset(s2)
	require.Zero(t, pool.Stats().InUseBytes, "the partial frame went back")
	_, err = c1.Write(frames4(1, 7)) // not read any more
	require.NoError(t, err)
	done := make(chan error, 1)
	var got []byte
	go func() {
		f, err := r.ReadFrame()
		got = append(got, f.Bytes()...)
		f.Release()
		done <- err
	}()
	testnet.WaitParked(t, readFrameFn)
	require.Zero(t, pool.Stats().InUseBytes, "parked on the new connection")
	_, err = c2.Write(frames4(1, 3))
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.Equal(t, []byte{1, 1, 1}, got)
	require.NoError(t, c2.Close())
	_, err = r.ReadFrame()
	require.Equal(t, io.EOF, err)
	require.Zero(t, pool.Stats().InUseBytes)
}

func TestResetZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	pool := bufferpool.NewTiered()
	data := frames4(4, 10)
	c := &chunkConn{data: data}
	r, err := NewReader(c, spec4, WithPool(pool))
	require.NoError(t, err)
	require.Zero(t, testing.AllocsPerRun(100, func() {
		c.data, c.reads, c.sizes = data, 0, c.sizes[:0]
		r.Reset(c)
		f, err := r.ReadFrame()
		if err != nil {
			panic(err)
		}
		f.Release()
	}))
	r.Release()
	require.Zero(t, pool.Stats().InUseBytes)
}
