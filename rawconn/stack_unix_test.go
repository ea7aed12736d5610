//go:build unix

package rawconn_test

import (
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

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
// second ReadOnReady until the peer closes (for a datagram socket, until
// the read deadline passes) grows a goroutine stack that had burn bytes
// used first.
func grewReading(t *testing.T, network string, burn int, pool bufferpool.Pool) bool {
	t.Helper()
	var rc, wc conn
	var end func()
	var endErr error
	if network == "udp" {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		t.Cleanup(func() { u.Close() })
		w, err := net.DialUDP("udp", nil, u.LocalAddr().(*net.UDPAddr))
		require.NoError(t, err)
		t.Cleanup(func() { w.Close() })
		rc, wc = u, w
		end, endErr = func() { rc.SetReadDeadline(time.Now()) }, os.ErrDeadlineExceeded
	} else {
		rc, wc = pair(t, network)
		end, endErr = func() { wc.Close() }, io.EOF
	}
	r, err := rawconn.New(rc)
	require.NoError(t, err)
	_, err = wc.Write(make([]byte, 100))
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
		end()
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
	require.ErrorIs(t, errs[1], endErr)
	return grew
}

// TestParkHeadroom checks that a reader with parkHeadroom bytes of stack in
// use wakes, reads a message into a pool buffer and parks again within a
// 2 KiB stack. With a warm pool (the steady state) the check is exact. With
// a pool whose Get allocates (after a garbage collection emptied it), the
// runtime's allocator runs on the reader's stack and now and then refills
// its cache of spans, which goes deeper than anything here: fewer than half
// of 10 attempts may grow (a Get made deeper in the library, as in the
// callback, makes all of them grow).
//
// The garbage collector is off and heap profiling too while it measures:
// an allocation that happens to sweep spans or to be sampled for the heap
// profile runs deeper in the runtime than anything here, wherever it is
// made, and would make the result a matter of timing.
func TestParkHeadroom(t *testing.T) {
	if !stacktest.InChild(t) {
		return
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC() // and finish sweeping: an allocation that sweeps runs deep
	for _, network := range []string{"tcp", "unix", "udp"} {
		warm := bufferpool.NewTiered()
		grewReading(t, network, 0, warm)
		grown := 0
		for range 10 {
			if grewReading(t, network, parkHeadroom, bufferpool.NewTiered()) {
				grown++
			}
		}
		t.Logf("%s: a 2 KiB stack grows after %d B burnt (warm pool); %d of 10 attempts with an allocating pool grew at %d B",
			network, stacktest.Headroom(func(burn int) bool { return grewReading(t, network, burn, warm) }), grown, parkHeadroom)
		assert.False(t, grewReading(t, network, parkHeadroom, warm), "%s, warm pool", network)
		assert.Less(t, grown, 5, "%s, allocating pool", network)
		assert.True(t, grewReading(t, network, 2048, warm), "%s: the check can fail", network)
	}
}
