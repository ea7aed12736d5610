package alts

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/readyreader"
)

// recConn is a TCP connection that records what is written to it. It is
// a readyreader.Reader that reads the socket as readyreader does a bare
// one (on Unix, without a buffer while it waits), so a Conn over it reads
// as over the bare socket.
type recConn struct {
	*net.TCPConn
	rr readyreader.Reader
	mu sync.Mutex
	w  bytes.Buffer
}

func newRecConn(c *net.TCPConn) *recConn {
	return &recConn{TCPConn: c, rr: readyreader.New(c)}
}

func (r *recConn) Read(p []byte) (int, error) { return r.TCPConn.Read(p) }

func (r *recConn) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	return r.rr.ReadOnReady(size, pool)
}

func (r *recConn) Write(p []byte) (int, error) {
	n, err := r.TCPConn.Write(p)
	r.mu.Lock()
	r.w.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recConn) written() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.w.Bytes())
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

type readResult struct {
	data []byte
	err  error
}

// readAsync reads n bytes from c on a goroutine of its own.
func readAsync(c io.Reader, n int) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		buf := make([]byte, n)
		_, err := io.ReadFull(c, buf)
		ch <- readResult{buf, err}
	}()
	return ch
}

// collectWhileParked waits until readers goroutines are parked in
// Conn.Read with nothing buffered, runs two collections, and checks that
// the AEADs of both directions of every Conn in conns are gone: a strong
// reference (box) would have kept them.
func collectWhileParked(t *testing.T, readers int, conns ...*Conn) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for testnet.CountParked("alts.(*Conn).Read", "[IO wait") < readers {
		require.True(t, time.Now().Before(deadline), "fewer than %d readers parked after 30 s", readers)
		time.Sleep(time.Millisecond)
	}
	runtime.GC()
	runtime.GC()
	for _, c := range conns {
		assert.Nil(t, c.in.weak.Value(), "%v: read AEAD kept while idle", c.Side())
		assert.Nil(t, c.out.weak.Value(), "%v: write AEAD kept while idle", c.Side())
	}
}

// TestIdleReleasesCipherState checks that a connection idle across a
// garbage collection keeps no AEAD (only its key), and rebuilds it when
// data flows again, in both directions, for both record protocols.
func TestIdleReleasesCipherState(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			a, b := testnet.TCPPair(t)
			cl, err := newConnUnguarded(a, ClientSide, protocol, keyFor(protocol))
			require.NoError(t, err)
			sv, err := newConnUnguarded(b, ServerSide, protocol, keyFor(protocol))
			require.NoError(t, err)
			t.Cleanup(func() { cl.Close(); sv.Close() })
			// Idle since NewConn: the first frames need rebuilt AEADs too.
			for round := range 4 {
				// Several frames each way (16 KiB frames).
				up, down := randBytes(t, 40000), randBytes(t, 30000)
				toSv, toCl := readAsync(sv, len(up)), readAsync(cl, len(down))
				collectWhileParked(t, 2, cl, sv)
				_, err := cl.Write(up)
				require.NoError(t, err)
				_, err = sv.Write(down)
				require.NoError(t, err)
				r := <-toSv
				require.NoError(t, r.err)
				require.True(t, bytes.Equal(up, r.data), "round %d: server read other bytes", round)
				r = <-toCl
				require.NoError(t, r.err)
				require.True(t, bytes.Equal(down, r.data), "round %d: client read other bytes", round)
				require.False(t, sameAEAD(cl) || sameAEAD(sv), "round %d: one AEAD for both directions", round)
			}
		})
	}
}

// smallReads reads at most 64 bytes at a time.
type smallReads struct{ r io.Reader }

func (s smallReads) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 64)]) }

// TestIdleKeepsNoReference checks what the pool's counters cannot show:
// that a reader parked after frames of every size keeps no reference into a
// buffer it gave back (an empty plaintext view did, so the last read buffer
// stayed alive behind the pool's back), in both record protocols and on
// both ends.
func TestIdleKeepsNoReference(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			pool := &testnet.ForgetPool{}
			cl, sv := connPair(t, protocol, true, pool)
			for _, size := range []int{10, 40000} {
				up, down := randBytes(t, size), randBytes(t, size)
				// Reads of 64 bytes: frames are opened in place and
				// delivered from the buffer, as for a small
				// application buffer (larger reads open straight into
				// the caller's slice).
				toSv := readAsync(smallReads{sv}, len(up))
				toCl := readAsync(smallReads{cl}, len(down))
				_, err := cl.Write(up)
				require.NoError(t, err)
				_, err = sv.Write(down)
				require.NoError(t, err)
				r := <-toSv
				require.NoError(t, r.err)
				require.True(t, bytes.Equal(up, r.data))
				r = <-toCl
				require.NoError(t, r.err)
				require.True(t, bytes.Equal(down, r.data))
			}
			last := readAsync(sv, 1)
			testnet.WaitParked(t, "alts.(*Conn).Read")
			require.Zero(t, pool.InUseBytes())
			pool.RequireUnreferenced(t)
			_, err := cl.Write([]byte{1})
			require.NoError(t, err)
			require.NoError(t, (<-last).err)
		})
	}
}

// TestIdleAcrossRekeyEpoch lets both directions of an AES128GCMRekey pair
// go idle across collections right before, at and after the 2^16-frame
// key change: the frame that starts epoch 1 comes after a collection freed
// the AEAD of epoch 0, so the rebuilt AEAD must be that of epoch 1
// (derived from the kept key-derivation key), and the counters must go on
// as if nothing had been rebuilt. Every frame is checked against the
// reference implementation, and the peer reads it.
func TestIdleAcrossRekeyEpoch(t *testing.T) {
	const start = 1<<16 - 2 // frames start, start+1 in epoch 0; start+2, start+3 in epoch 1
	ref := refCipher{AES128GCMRekey, testKeyRekey}
	a, b := testnet.TCPPair(t)
	ra, rb := newRecConn(a), newRecConn(b)
	cl, err := newConnUnguarded(ra, ClientSide, AES128GCMRekey, testKeyRekey)
	require.NoError(t, err)
	sv, err := newConnUnguarded(rb, ServerSide, AES128GCMRekey, testKeyRekey)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close(); sv.Close() })
	if rawPathExpected {
		require.False(t, cl.rd.Pinning(), "recConn keeps the socket's raw path")
	}
	cl.setCounters(refCounter(ClientSide, start), refCounter(ServerSide, start))
	sv.setCounters(refCounter(ServerSide, start), refCounter(ClientSide, start))

	var wantCl, wantSv []byte // the frames each end must have written
	for i := range 4 {
		n := start + uint64(i)
		up, down := []byte(fmt.Sprintf("up %d", n)), []byte(fmt.Sprintf("down %d", n))
		toSv, toCl := readAsync(sv, len(up)), readAsync(cl, len(down))
		collectWhileParked(t, 2, cl, sv)
		_, err := cl.Write(up)
		require.NoError(t, err)
		_, err = sv.Write(down)
		require.NoError(t, err)
		wantCl = append(wantCl, ref.frame(t, ClientSide, n, up)...)
		wantSv = append(wantSv, ref.frame(t, ServerSide, n, down)...)
		r := <-toSv
		require.NoError(t, r.err, "frame %d", n)
		require.Equal(t, up, r.data)
		r = <-toCl
		require.NoError(t, r.err, "frame %d", n)
		require.Equal(t, down, r.data)
		for _, c := range []*Conn{cl, sv} {
			require.Equal(t, n>>16, c.out.epoch, "%v: write epoch after frame %d", c.Side(), n)
			require.Equal(t, n>>16, c.in.epoch, "%v: read epoch after frame %d", c.Side(), n)
			// The counters moved by one frame each, rebuilt AEAD or not.
			require.Equal(t, refCounter(c.Side(), n+1), c.out.ctr.value())
			require.Equal(t, refCounter(other(c.Side()), n+1), c.in.ctr.value())
		}
	}
	require.True(t, bytes.Equal(wantCl, ra.written()), "client frames differ from the reference")
	require.True(t, bytes.Equal(wantSv, rb.written()), "server frames differ from the reference")
}

// TestIdleGRPCFrames checks grpc-go's frames with AEADs rebuilt after a
// collection before every frame: written by a Conn idle across a
// collection before each message, and read by one whose reader parks and
// loses its AEAD to a collection before each frame arrives.
func TestIdleGRPCFrames(t *testing.T) {
	for _, tt := range grpcFrames {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(t, tt.frames)
			bc := &bufConn{}
			w, err := newConnUnguarded(bc, tt.side, tt.protocol, keyFor(tt.protocol))
			require.NoError(t, err)
			for _, m := range tt.msgs {
				runtime.GC()
				runtime.GC()
				require.Nil(t, w.out.weak.Value(), "write AEAD kept while idle")
				_, err := w.Write([]byte(m))
				require.NoError(t, err)
			}
			require.Equal(t, want, bc.written())

			a, b := testnet.TCPPair(t)
			r, err := newConnUnguarded(a, other(tt.side), tt.protocol, keyFor(tt.protocol))
			require.NoError(t, err)
			t.Cleanup(func() { r.Close(); b.Close() })
			frames := want
			for _, m := range tt.msgs {
				got := readAsync(r, len(m))
				collectWhileParked(t, 1, r)
				n := 4 + binary.LittleEndian.Uint32(frames)
				_, err := b.Write(frames[:n])
				require.NoError(t, err)
				frames = frames[n:]
				res := <-got
				require.NoError(t, res.err)
				require.Equal(t, m, string(res.data))
			}
			require.Empty(t, frames)
		})
	}
}
