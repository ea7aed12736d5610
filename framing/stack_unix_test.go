//go:build unix

package framing

import (
	"io"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/stacktest"
	"github.com/readyconn/readyconn/internal/testnet"
)

// parkHeadroom is the stack, in bytes, that a goroutine may have used before
// it calls into framing and still park in ReadFrame on its initial 2 KiB
// stack (see Reader.ReadFrame for why that matters). The promise is made
// for the Unix path, where the Reader waits through syscall.RawConn.
const parkHeadroom = 150

// stackPath is what the measured goroutine does with its end of a
// connection before it parks: optionally write a frame, then read the frame
// the peer sent (the wake and delivery paths) and park in a second
// ReadFrame until the peer closes.
type stackPath struct {
	name  string
	write int // payload bytes of a frame written first (0: none)
}

// stackPaths are measured. A frame of 64 KiB goes out in vectored writes,
// and the first vectored write on a connection allocates the net package's
// iovec cache deep down in poll.FD.Writev, which a 2 KiB stack does not
// survive with any headroom worth the name (the same holds for a bare
// net.Buffers.WriteTo); so the measured goroutine writes its 64 KiB frame
// on a connection that has done one vectored write before, as a
// long-lived one has.
var stackPaths = []stackPath{
	{name: "read"},
	{name: "write-100B-then-read", write: 100},
	{name: "write-64KiB-then-read", write: 64 << 10},
}

// parkGrew reports whether a goroutine that has used burn bytes of stack
// grows its stack when it goes down path p over a fresh TCP connection,
// taking buffers from pool.
func parkGrew(t *testing.T, p stackPath, pool bufferpool.Pool, burn int) bool {
	t.Helper()
	client, server := testnet.TCPPair(t)
	// The Reader and Writer are made here, not on the measured goroutine:
	// NewReader's depth is that of readyreader.New.
	r, err := NewReader(server, kafkaNoStrip, WithPool(pool))
	require.NoError(t, err)
	w, err := NewWriter(server, kafkaNoStrip, WithPool(pool))
	require.NoError(t, err)
	warm := 0
	if p.write > smallFrame {
		require.NoError(t, w.WriteFrame(make([]byte, p.write)))
		warm = 4 + p.write
	}
	cw, err := NewWriter(client, kafkaNoStrip, WithPool(pool))
	require.NoError(t, err)
	require.NoError(t, cw.WriteFrame([]byte("hello")))

	// The peer drains what the measured goroutine writes, and closes once
	// that goroutine is parked in its second ReadFrame.
	peer := make(chan error, 1)
	go func() {
		var err error
		if n := warm + 4*min(p.write, 1) + p.write; n > 0 {
			_, err = io.CopyN(io.Discard, client, int64(n))
		}
		if err == nil {
			testnet.WaitParked(t, "framing.(*Reader).ReadFrame")
		}
		client.Close()
		peer <- err
	}()
	run := &pathRun{r: r, w: w, payload: make([]byte, p.write)}
	grew := stacktest.Grew(burn, run.run)
	require.NoError(t, <-peer)
	require.NoError(t, run.errs[0])
	require.NoError(t, run.errs[1])
	require.Equal(t, "hello", string(run.got[:run.n]))
	require.Equal(t, io.EOF, run.errs[2])
	return grew
}

// pathRun is what the measured goroutine does. Its state lives on the heap,
// so that its own frame is small and the measure is framing's.
type pathRun struct {
	r       *Reader
	w       *Writer
	payload []byte
	f       Frame
	errs    [3]error
	got     [8]byte
	n       int
}

//go:noinline
func (p *pathRun) run() {
	if len(p.payload) > 0 {
		p.errs[0] = p.w.WriteFrame(p.payload)
	}
	p.f, p.errs[1] = p.r.ReadFrame()
	p.n = copy(p.got[:], p.f.Bytes())
	p.f.Release()
	_, p.errs[2] = p.r.ReadFrame() // parks until the peer closes
}

// maxBurn returns the largest burn (to 8 B) for which grew is false, given
// that grew(lo) is false and grew(hi) true. stacktest.Grew burns stack in
// steps of about 100 B, so the true headroom lies between this and one step
// more.
func maxBurn(grew func(int) bool, lo, hi int) int {
	for hi-lo > 8 {
		mid := (lo + hi) / 2
		if grew(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return lo
}

// TestParkHeadroom proves that a goroutine that reads frames, with or
// without writing one first, parks in ReadFrame on its initial 2 KiB stack
// even after it has used parkHeadroom bytes of stack itself, and that the
// check can fail. It logs the largest burn that still fits, next to that of
// a plain net.Conn.Read measured the same way (the parent process shows the
// child's output only on failure; to see the figures, run the child
// directly: READYCONN_STACKTEST_CHILD=TestParkHeadroom
// GODEBUG=adaptivestackstart=0 go test -run '^TestParkHeadroom$' -v).
//
// The pools are warmed first, the garbage collector and heap profiling are
// off meanwhile, and one P runs goroutines: the first use of a sync.Pool
// after a collection (the bufferpool's classes, framing's Frame
// descriptors), a Get on a P whose share of the pool is empty, and an
// allocation that sweeps or is sampled go deeper into the runtime than
// anything framing adds, and would make the result depend on when a
// collection ran and where the goroutine was scheduled.
func TestParkHeadroom(t *testing.T) {
	if !stacktest.InChild(t) {
		return
	}
	require.True(t, stacktest.FixedStart())
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	runtime.GC() // and finish sweeping: an allocation that sweeps runs deep
	pool := bufferpool.NewTiered()
	for _, p := range stackPaths {
		parkGrew(t, p, pool, 0) // warm the pool's classes for this path
	}
	for _, p := range stackPaths {
		// For the record: a pool that has never served this path's sizes
		// (sync.Pool's first use runs deep; that depth is the
		// bufferpool's and the wake path's, not framing's).
		if fresh := bufferpool.NewTiered(); parkGrew(t, p, fresh, 0) {
			t.Logf("%s, fresh pool: grows with nothing burnt", p.name)
		} else {
			t.Logf("%s, fresh pool: largest burn that fits %d B", p.name, maxBurn(func(b int) bool { return parkGrew(t, p, bufferpool.NewTiered(), b) }, 0, 2048))
		}
	}
	for _, p := range stackPaths {
		t.Run(p.name, func(t *testing.T) {
			assert.False(t, parkGrew(t, p, pool, parkHeadroom), "parked after %d B burnt: the stack grew", parkHeadroom)
			require.True(t, parkGrew(t, p, pool, 2048), "the check cannot fail")
			if !parkGrew(t, p, pool, 0) {
				t.Logf("%s: largest burn that fits %d B", p.name, maxBurn(func(b int) bool { return parkGrew(t, p, pool, b) }, 0, 2048))
			}
		})
	}
	// The reference: a plain net.Conn.Read.
	netGrew := func(burn int) bool {
		client, server := testnet.TCPPair(t)
		_, err := client.Write([]byte("x"))
		require.NoError(t, err)
		done := make(chan struct{})
		go func() {
			defer close(done)
			testnet.WaitParked(t, "net.(*conn).Read")
			client.Close()
		}()
		var rerr error
		g := stacktest.Grew(burn, func() {
			var b [1]byte
			if _, rerr = server.Read(b[:]); rerr == nil {
				_, rerr = server.Read(b[:])
			}
		})
		<-done
		require.Equal(t, io.EOF, rerr)
		return g
	}
	t.Logf("net.Conn.Read: largest burn that fits %d B", maxBurn(netGrew, 0, 2048))
}
