package alts

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/stretchr/testify/require"
)

// sameAEAD reports whether the two directions of c use one AEAD instance,
// which they must never do. It compares the weak pointers, which are equal
// exactly when made from the same AEAD, even after a collection freed it.
// Call it only while no Read or Write runs.
func sameAEAD(c *Conn) bool {
	return c.in.weak == c.out.weak
}

// TestRekeyOneDirectionThenOther moves one direction of a Conn into the next
// key epoch while the other stays behind, then the other one, in both
// orders, and checks every byte written against the reference
// implementation and every frame read from it; the directions never share
// an AEAD.
func TestRekeyOneDirectionThenOther(t *testing.T) {
	const start = 1<<16 - 2 // frames start, start+1 in epoch 0; start+2 in epoch 1
	ref := refCipher{AES128GCMRekey, testKeyRekey}
	for _, side := range []Side{ClientSide, ServerSide} {
		for _, writeFirst := range []bool{true, false} {
			t.Run(fmt.Sprintf("%v/writeFirst=%v", side, writeFirst), func(t *testing.T) {
				peer := other(side)
				var in []byte // frames the peer sends, counters start..start+4
				for i := range 5 {
					in = append(in, ref.frame(t, peer, start+uint64(i), []byte{'r', byte(i)})...)
				}
				bc := &bufConn{r: bytes.NewReader(in)}
				c, err := newConnUnguarded(bc, side, AES128GCMRekey, testKeyRekey)
				require.NoError(t, err)
				c.setCounters(refCounter(side, start), refCounter(peer, start))

				var want []byte // frames c must write
				wrote, read := 0, 0
				write := func(k int) {
					for range k {
						m := []byte{'w', byte(wrote)}
						_, err := c.Write(m)
						require.NoError(t, err)
						want = append(want, ref.frame(t, side, start+uint64(wrote), m)...)
						wrote++
					}
				}
				readN := func(k int) {
					for range k {
						buf := make([]byte, 2)
						_, err := io.ReadFull(c, buf)
						require.NoError(t, err)
						require.Equal(t, []byte{'r', byte(read)}, buf)
						read++
					}
				}
				epochs := func() (out, in uint64) { return c.out.epoch, c.in.epoch }

				// Both in epoch 0, each with its own AEAD.
				write(1)
				readN(1)
				require.False(t, sameAEAD(c))
				// One direction crosses into epoch 1.
				if writeFirst {
					write(2)
				} else {
					readN(2)
				}
				o, i := epochs()
				require.NotEqual(t, o, i)
				require.False(t, sameAEAD(c), "epochs %d, %d", o, i)
				// The other one follows.
				if writeFirst {
					readN(2)
				} else {
					write(2)
				}
				o, i = epochs()
				require.Equal(t, uint64(1), o)
				require.Equal(t, uint64(1), i)
				require.False(t, sameAEAD(c))
				// Within the epoch nothing changes.
				write(2)
				readN(0)
				require.False(t, sameAEAD(c))
				require.True(t, bytes.Equal(want, bc.written()), "written frames differ from the reference")

				// Jump the outbound counter far ahead (a carry into byte
				// 3) and back: each direction derives what it needs.
				c.setCounters(refCounter(side, 1<<24), refCounter(peer, start+uint64(read)))
				m := []byte("carry")
				_, err = c.Write(m)
				require.NoError(t, err)
				want = append(want, ref.frame(t, side, 1<<24, m)...)
				require.False(t, sameAEAD(c))
				readN(1)
				require.True(t, bytes.Equal(want, bc.written()))
			})
		}
	}
}

// TestConcurrentReadWriteAcrossRekey runs both directions of both ends at
// once across the 2^16-frame key change, so that a Conn's reader and writer
// change their frame AEAD while the other one works (run with -race).
func TestConcurrentReadWriteAcrossRekey(t *testing.T) {
	const frames = 400
	for round := range 5 {
		pool := bufferpool.NewTiered()
		cl, sv := connPair(t, AES128GCMRekey, true, pool)
		// Each direction crosses into epoch 1 somewhere in the middle.
		start := uint64(1<<16 - frames/2 + 37*round)
		cl.setCounters(refCounter(ClientSide, start), refCounter(ServerSide, start+5))
		sv.setCounters(refCounter(ServerSide, start+5), refCounter(ClientSide, start))
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for _, c := range []*Conn{cl, sv} {
			wg.Add(2)
			go func() {
				defer wg.Done()
				for i := range frames {
					m := bytes.Repeat([]byte{byte(i)}, 1+i%97)
					if _, err := c.Write(m); err != nil {
						errs <- err
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				for i := range frames {
					m := make([]byte, 1+i%97)
					if _, err := io.ReadFull(c, m); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(m, bytes.Repeat([]byte{byte(i)}, len(m))) {
						errs <- fmt.Errorf("%v: message %d corrupted", c.Side(), i)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		for _, c := range []*Conn{cl, sv} {
			require.Equal(t, uint64(1), c.in.epoch)
			require.Equal(t, uint64(1), c.out.epoch)
			require.False(t, sameAEAD(c), "%v: both directions share an AEAD", c.Side())
		}
		require.NoError(t, cl.Close())
		require.NoError(t, sv.Close())
		require.Zero(t, pool.Stats().InUseBytes)
	}
}

// opaqueConn hides the socket's SyscallConn, so that readyreader falls back
// to blocking reads (as on Windows, or for a wrapped connection).
type opaqueConn struct{ net.Conn }

// TestBlockingFallbackReadSize checks that a Conn on the blocking fallback,
// which pins its read buffer while the peer is silent, asks for about one
// frame of the default size (no more than the 16-21 KiB an idle crypto/tls
// connection keeps) instead of the large reads of the non-pinning path, and
// that frames larger than that still arrive intact.
func TestBlockingFallbackReadSize(t *testing.T) {
	const idleFallbackLimit = 20 << 10
	a, b := testnet.TCPPair(t)
	if rawPathExpected {
		bare, err := newConnUnguarded(a, ClientSide, AES128GCM, testKey128)
		require.NoError(t, err)
		require.False(t, bare.rd.Pinning(), "bare TCP socket on Unix")
	}
	pool := bufferpool.NewTiered()
	cl, err := newConnUnguarded(opaqueConn{a}, ClientSide, AES128GCMRekey, testKeyRekey, WithPool(pool))
	require.NoError(t, err)
	require.True(t, cl.rd.Pinning())
	sv, err := newConnUnguarded(b, ServerSide, AES128GCMRekey, testKeyRekey, WithMaxFrameSize(MaxFrameSize))
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close(); sv.Close() })

	type res struct {
		data []byte
		err  error
	}
	recv := func(n int) <-chan res {
		ch := make(chan res, 1)
		go func() {
			buf := make([]byte, n)
			_, err := io.ReadFull(cl, buf)
			ch <- res{buf, err}
		}()
		return ch
	}
	parked := func() int64 {
		t.Helper()
		var used int64
		require.Eventually(t, func() bool {
			used = pool.Stats().InUseBytes
			return used > 0
		}, 5*time.Second, time.Millisecond, "the blocking fallback takes its buffer before the read")
		return used
	}

	for _, size := range []int{10, 3 << 20} {
		ch := recv(size)
		held := parked()
		require.LessOrEqual(t, held, int64(idleFallbackLimit), "idle Read pins about one default-size frame")
		msg := bytes.Repeat([]byte{byte(size)}, size)
		for i := range msg {
			msg[i] += byte(i / 1000)
		}
		_, err := sv.Write(msg)
		require.NoError(t, err)
		r := <-ch
		require.NoError(t, r.err)
		require.True(t, bytes.Equal(msg, r.data), "size %d", size)
	}
	// After frames of 1 MiB, an idle Read pins no more than before.
	ch := recv(1)
	require.LessOrEqual(t, parked(), int64(idleFallbackLimit))
	_, err = sv.Write([]byte{1})
	require.NoError(t, err)
	require.NoError(t, (<-ch).err)
}
