//go:build unix

package readyreader_test

import (
	"errors"
	"io"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/stacktest"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/readyreader"
)

// parkHeadroom is the stack, in bytes, a caller may have used before a
// Buffered method without the wake-up, read and park growing a 2 KiB
// goroutine stack (which a parked goroutine keeps for as long as it is
// idle).
const parkHeadroom = 150

// bufferedWaits are the Buffered methods that wait for the connection: each
// reads one byte (of a one-byte message, "\n") or fails.
var bufferedWaits = []struct {
	name string
	op   func(b *readyreader.Buffered) error
}{
	{"Read", func(b *readyreader.Buffered) error {
		var p [1]byte
		_, err := b.Read(p[:])
		return err
	}},
	{"ReadByte", func(b *readyreader.Buffered) error { _, err := b.ReadByte(); return err }},
	{"Peek", func(b *readyreader.Buffered) error {
		_, err := b.Peek(1)
		if err == nil {
			_, err = b.Discard(1)
		}
		return err
	}},
	{"Discard", func(b *readyreader.Buffered) error { _, err := b.Discard(1); return err }},
	{"ReadRune", func(b *readyreader.Buffered) error { _, _, err := b.ReadRune(); return err }},
	{"ReadSlice", func(b *readyreader.Buffered) error { _, err := b.ReadSlice('\n'); return err }},
	{"ReadLine", func(b *readyreader.Buffered) error { _, _, err := b.ReadLine(); return err }},
	{"ReadString", func(b *readyreader.Buffered) error { _, err := b.ReadString('\n'); return err }},
	{"WriteTo", func(b *readyreader.Buffered) error {
		// The first call stops after one write; the second waits for
		// the end of the stream, which WriteTo reports as nil.
		_, err := b.WriteTo(stopWriter{})
		switch err {
		case errStop:
			return nil
		case nil:
			return io.EOF
		}
		return err
	}},
}

var errStop = errors.New("stop")

// stopWriter takes every write and then asks its caller to stop.
type stopWriter struct{}

func (stopWriter) Write(p []byte) (int, error) { return len(p), errStop }

// grewBuffered reports whether op reading a one-byte message and then
// parking in a second op until the peer closes grows a goroutine stack that
// had burn bytes used first.
func grewBuffered(t *testing.T, burn int, pool bufferpool.Pool, op func(*readyreader.Buffered) error) bool {
	t.Helper()
	rc, wc := pair(t, "tcp")
	b := readyreader.NewBuffered(readyreader.New(rc), 32<<10, pool)
	_, err := wc.Write([]byte("\n"))
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		testnet.WaitParked(t, "readyreader.(*Buffered)")
		wc.Close()
	}()
	var errs [2]error
	grew := stacktest.Grew(burn, func() {
		errs[0] = op(b)
		errs[1] = op(b)
	})
	<-done
	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], io.EOF)
	return grew
}

// TestParkHeadroom checks that every Buffered method that waits, with
// parkHeadroom bytes of stack in use, wakes, reads into a pool buffer and
// parks again within a 2 KiB stack. With a warm pool the check is exact.
// With a pool whose Get allocates, the runtime's allocator runs on the
// reader's stack and now and then refills its cache of spans, which goes
// deeper than anything here: fewer than half of 10 attempts may grow (a
// Get made deeper in the library makes all of them grow). The garbage
// collector and heap profiling are off while it measures (see rawconn's
// TestParkHeadroom).
func TestParkHeadroom(t *testing.T) {
	if !stacktest.InChild(t) {
		return
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	for _, m := range bufferedWaits {
		warm := bufferpool.NewTiered()
		grewBuffered(t, 0, warm, m.op)
		grown := 0
		for range 10 {
			if grewBuffered(t, parkHeadroom, bufferpool.NewTiered(), m.op) {
				grown++
			}
		}
		t.Logf("%s: a 2 KiB stack grows after %d B burnt (warm pool); %d of 10 attempts with an allocating pool grew at %d B",
			m.name, stacktest.Headroom(func(burn int) bool { return grewBuffered(t, burn, warm, m.op) }), grown, parkHeadroom)
		assert.False(t, grewBuffered(t, parkHeadroom, warm, m.op), "%s, warm pool", m.name)
		assert.Less(t, grown, 5, "%s, allocating pool", m.name)
		assert.True(t, grewBuffered(t, 2048, warm, m.op), "%s: the check can fail", m.name)
	}
}
