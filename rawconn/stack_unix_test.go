//go:build unix

package rawconn_test

import (
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/stacktest"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/rawconn"
)

// parkHeadroom is the stack, in bytes, a caller may have used before
// ReadOnReady without the wake-up, read and park growing a 2 KiB goroutine
// stack (which a parked goroutine then keeps for as long as it is idle).
const parkHeadroom = 150

// grewReading reports whether reading one message and then parking in a
// second ReadOnReady until the peer closes grows a goroutine stack that had
// burn bytes used first. newPool gives the pool of each attempt.
func grewReading(t *testing.T, burn int, pool bufferpool.Pool) bool {
	t.Helper()
	rc, wc := pair(t, "tcp")
	r, err := rawconn.New(rc)
	require.NoError(t, err)
	_, err = wc.Write(make([]byte, 100))
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
		wc.Close()
	}()
	var errs [2]error
	grew := stacktest.Grew(burn, func() {
		buf, _, err := r.ReadOnReady(32<<10, pool)
		pool.Put(buf)
		errs[0] = err
		_, _, errs[1] = r.ReadOnReady(32<<10, pool)
	})
	<-done
	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], io.EOF)
	return grew
}

// headroom finds the largest burn (to 8 B) for which grew is false.
func headroom(grew func(burn int) bool) int {
	lo, hi := 0, 2048
	for lo+8 < hi {
		mid := (lo + hi) / 2
		if grew(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return lo
}

// TestParkHeadroom checks that a reader with parkHeadroom bytes of stack in
// use wakes, reads a message into a pool buffer and parks again within a
// 2 KiB stack, both when the pool has the buffer (the steady state) and
// when its Get allocates (after a garbage collection emptied it).
//
// The garbage collector is off and memory profiling too while it measures:
// an allocation that happens to sweep spans or to be sampled for the heap
// profile runs deeper in the runtime than anything here, wherever it is
// made, and would make the result a matter of timing.
func TestParkHeadroom(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector deepens every frame")
	}
	// memprofilerate=0 from the child's start: a sampled allocation
	// records its stack deep in the runtime.
	t.Setenv("GODEBUG", strings.TrimPrefix(os.Getenv("GODEBUG")+",memprofilerate=0", ","))
	if !stacktest.InChild(t) {
		return
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC() // and finish sweeping: an allocation that sweeps runs deep

	warm := bufferpool.NewTiered()
	for range 3 {
		grewReading(t, 0, warm)
	}
	t.Logf("warm pool: a 2 KiB stack grows after %d B burnt", headroom(func(burn int) bool { return grewReading(t, burn, warm) }))
	t.Logf("allocating pool: a 2 KiB stack grows after %d B burnt", headroom(func(burn int) bool {
		return grewReading(t, burn, bufferpool.NewTiered())
	}))
	assert.False(t, grewReading(t, parkHeadroom, warm), "warm pool")
	assert.False(t, grewReading(t, parkHeadroom, bufferpool.NewTiered()), "allocating pool")
	assert.True(t, grewReading(t, 2048, warm), "the check can fail")
}
