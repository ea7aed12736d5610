package framing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/stretchr/testify/require"
)

// readFrameFn is what the stack of a goroutine waiting in ReadFrame shows.
const readFrameFn = "framing.(*Reader).ReadFrame"

// waitHolding waits until the goroutine reading frames has taken in the
// bytes just sent to it and is parked in ReadFrame again, and returns the
// pool bytes it holds then. The bytes are partial frames, so the reader
// holds some memory once it has read them: until then, while InUseBytes is
// 0, a parked reader may still be the one from before the bytes arrived.
func waitHolding(t *testing.T, pool *bufferpool.Tiered) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if pool.Stats().InUseBytes > 0 && testnet.Parked(readFrameFn, "[IO wait") {
			// Parked after taking the bytes in, and nothing more comes:
			// what it holds is what it holds while idle.
			return pool.Stats().InUseBytes
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reader did not take in the bytes and park in %s", readFrameFn)
		}
		time.Sleep(time.Millisecond)
	}
}

var kafkaNoStrip = Spec{LengthSize: 4, Strip: 4, MaxFrameSize: 64 << 20}

func TestTCPIdleHoldsNothing(t *testing.T) {
	client, server := testnet.TCPPair(t)
	pool := bufferpool.NewTiered()
	r, err := NewReader(server, kafkaNoStrip, WithPool(pool))
	require.NoError(t, err)
	w, err := NewWriter(client, kafkaNoStrip)
	require.NoError(t, err)

	type res struct {
		b   []byte
		err error
	}
	frames := make(chan res)
	go func() {
		for {
			f, err := r.ReadFrame()
			if err != nil {
				frames <- res{err: err}
				return
			}
			frames <- res{b: append([]byte(nil), f.Bytes()...)}
			f.Release()
		}
	}()

	testnet.WaitParked(t, readFrameFn)
	require.Zero(t, pool.Stats().InUseBytes, "parked before the first frame")

	require.NoError(t, w.WriteFrame([]byte("hello")))
	require.Equal(t, "hello", string((<-frames).b))
	// The reader was running when it sent the frame: a parked reader is
	// parked again.
	testnet.WaitParked(t, readFrameFn)
	require.Zero(t, pool.Stats().InUseBytes, "parked between frames")

	// A 1 MiB frame announced, 100 bytes sent: the Reader holds memory for
	// what arrived, not for what was announced.
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	hdr := binary.BigEndian.AppendUint32(nil, uint32(len(big)))
	_, err = client.Write(append(hdr, big[:100]...))
	require.NoError(t, err)
	require.LessOrEqual(t, waitHolding(t, pool), int64(pool.ClassSize(minChunk)), "partial frame")
	_, err = client.Write(big[100:])
	require.NoError(t, err)
	require.Equal(t, big, (<-frames).b)
	testnet.WaitParked(t, readFrameFn)
	require.Zero(t, pool.Stats().InUseBytes, "parked after a large frame")

	// Peer closes mid-frame.
	_, err = client.Write(hdr)
	require.NoError(t, err)
	client.Close()
	require.ErrorIs(t, (<-frames).err, io.ErrUnexpectedEOF)
	require.Zero(t, pool.Stats().InUseBytes)
}

func TestTCPPeerCloseBetweenFrames(t *testing.T) {
	client, server := testnet.TCPPair(t)
	r, err := NewReader(server, GRPCMessage)
	require.NoError(t, err)
	w, err := NewWriter(client, GRPCMessage)
	require.NoError(t, err)
	require.NoError(t, w.WriteFrame([]byte{0}, []byte("x")))
	client.Close()
	f, err := r.ReadFrame()
	require.NoError(t, err)
	f.Release()
	_, err = r.ReadFrame()
	require.Equal(t, io.EOF, err)
	_, err = r.ReadFrame()
	require.Equal(t, io.EOF, err)
}

func TestTCPPeerReset(t *testing.T) {
	client, server := testnet.TCPPair(t)
	r, err := NewReader(server, GRPCMessage)
	require.NoError(t, err)
	_, err = client.Write(hx("00 00000010 0102"))
	require.NoError(t, err)
	require.NoError(t, client.SetLinger(0))
	client.Close() // RST
	_, err = r.ReadFrame()
	require.Error(t, err)
	require.False(t, errors.Is(err, io.EOF))
	_, err2 := r.ReadFrame()
	require.Equal(t, err, err2, "sticky")
}

func TestTCPCloseWhileParked(t *testing.T) {
	for _, partial := range []bool{false, true} {
		t.Run(fmt.Sprint("partial=", partial), func(t *testing.T) {
			client, server := testnet.TCPPair(t)
			pool := bufferpool.NewTiered()
			r, err := NewReader(server, kafkaNoStrip, WithPool(pool))
			require.NoError(t, err)
			if partial {
				_, err = client.Write(hx("00000100 01"))
				require.NoError(t, err)
			}
			errc := make(chan error)
			go func() {
				_, err := r.ReadFrame()
				errc <- err
			}()
			// Any bytes were sent before ReadFrame started: it parks
			// only once it has taken them in.
			testnet.WaitParked(t, readFrameFn)
			if partial {
				require.Positive(t, pool.Stats().InUseBytes, "the partial frame")
			}
			require.NoError(t, server.Close())
			select {
			case err := <-errc:
				require.ErrorIs(t, err, net.ErrClosed)
			case <-time.After(5 * time.Second):
				t.Fatal("ReadFrame did not return after Close")
			}
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

func TestTCPDeadlines(t *testing.T) {
	client, server := testnet.TCPPair(t)
	pool := bufferpool.NewTiered()
	r, err := NewReader(server, kafkaNoStrip, WithPool(pool))
	require.NoError(t, err)

	// Idle timeout: not sticky.
	require.NoError(t, server.SetReadDeadline(time.Now().Add(30*time.Millisecond)))
	_, err = r.ReadFrame()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Zero(t, pool.Stats().InUseBytes)

	// Timeout in the middle of a frame keeps the partial frame.
	_, err = client.Write(hx("00000006 6162"))
	require.NoError(t, err)
	require.NoError(t, server.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = r.ReadFrame()
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, server.SetReadDeadline(time.Time{}))
	_, err = client.Write([]byte("cdef"))
	require.NoError(t, err)
	f, err := r.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, "abcdef", string(f.Bytes()))
	f.Release()

	// Write deadline in the past refuses without corrupting the stream.
	w, err := NewWriter(client, kafkaNoStrip)
	require.NoError(t, err)
	require.NoError(t, client.SetWriteDeadline(time.Now().Add(-time.Second)))
	require.ErrorIs(t, w.WriteFrame([]byte("zz")), os.ErrDeadlineExceeded)
	require.NoError(t, client.SetWriteDeadline(time.Time{}))
	require.NoError(t, w.WriteFrame([]byte("ok")))
	f, err = r.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, "ok", string(f.Bytes()))
	f.Release()
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestTCPConcurrent runs several connections, each with two goroutines
// sharing one Writer, and checks every frame on the reading side.
func TestTCPConcurrent(t *testing.T) {
	const conns, writers, frames = 3, 2, 200
	pool := bufferpool.NewTiered(bufferpool.WithDebug())
	var wg sync.WaitGroup
	errs := make(chan error, conns*(writers+1))
	for c := range conns {
		client, server := testnet.TCPPair(t)
		spec := []Spec{kafkaNoStrip, GRPCMessage, IggyRequest}[c%3]
		var w interface{ WriteFrame(...[]byte) error }
		var flush func() error // what the last write left buffered
		if c == 1 {
			bw, err := NewBufferedWriter(client, spec, 4096, WithPool(pool))
			require.NoError(t, err)
			w, flush = &flushingWriter{bw}, bw.Flush
		} else {
			fw, err := NewWriter(client, spec, WithPool(pool))
			require.NoError(t, err)
			w = fw
		}
		r, err := NewReader(server, spec, WithPool(pool), WithReadSize(8<<10))
		require.NoError(t, err)
		strip := spec.Strip
		prefix := spec.LengthOffset
		var ww sync.WaitGroup
		for g := range writers {
			ww.Add(1)
			go func() {
				defer ww.Done()
				rng := rand.New(rand.NewPCG(uint64(c), uint64(g)))
				for i := range frames {
					size := rng.IntN(64)
					if rng.IntN(10) == 0 {
						size = rng.IntN(70 << 10)
					}
					body := make([]byte, 8+size)
					for j := range body[8:] {
						body[8+j] = byte(rng.Uint32())
					}
					binary.BigEndian.PutUint32(body, uint32(g<<24|i))
					binary.BigEndian.PutUint32(body[4:], crc32.ChecksumIEEE(body[8:]))
					if err := w.WriteFrame(make([]byte, prefix), body); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ww.Wait()
			if flush != nil {
				if err := flush(); err != nil {
					errs <- err
				}
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := make([]int, writers)
			for range writers * frames {
				f, err := r.ReadFrame()
				if err != nil {
					errs <- err
					return
				}
				b := f.Bytes()[prefix+spec.LengthSize-strip:]
				id := binary.BigEndian.Uint32(b)
				g, i := int(id>>24), int(id&0xffffff)
				if g >= writers || i != next[g] || binary.BigEndian.Uint32(b[4:]) != crc32.ChecksumIEEE(b[8:]) {
					errs <- fmt.Errorf("conn %d: bad frame from writer %d seq %d (want %d)", c, g, i, next[g])
					return
				}
				next[g]++
				f.Release()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Zero(t, pool.Stats().InUseBytes)
}

// flushingWriter flushes a BufferedWriter now and then.
type flushingWriter struct{ *BufferedWriter }

func (f *flushingWriter) WriteFrame(parts ...[]byte) error {
	if err := f.BufferedWriter.WriteFrame(parts...); err != nil {
		return err
	}
	if f.Buffered() > 2000 || rand.IntN(4) == 0 {
		return f.Flush()
	}
	return nil
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		w, _ := NewWriter(c, MQTT)
		for i := range 100 {
			if w.WriteFrame([]byte{0x30}, make([]byte, i*50)) != nil {
				return
			}
		}
	}()
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer c.Close()
	pool := bufferpool.NewTiered()
	r, err := NewReader(c, Spec{LengthOffset: 1, Kind: MQTTVarint, Strip: StripThroughLength}, WithPool(pool))
	require.NoError(t, err)
	for i := range 100 {
		f, err := r.ReadFrame()
		require.NoError(t, err)
		require.Equal(t, i*50, f.Len())
		f.Release()
	}
	_, err = r.ReadFrame()
	require.Equal(t, io.EOF, err)
	require.Zero(t, pool.Stats().InUseBytes)
}

func TestTCPWriterZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	client, server := testnet.TCPPair(t)
	go io.Copy(io.Discard, server)
	w, err := NewWriter(client, GRPCMessage)
	require.NoError(t, err)
	require.True(t, w.writev)
	flag, payload := []byte{0}, make([]byte, 512)
	for range 10 {
		require.NoError(t, w.WriteFrame(flag, payload))
	}
	require.Zero(t, testing.AllocsPerRun(200, func() {
		if err := w.WriteFrame(flag, payload); err != nil {
			panic(err)
		}
	}), "small frames: one write from a pooled buffer")
	big := make([]byte, 64<<10)
	for range 10 {
		require.NoError(t, w.WriteFrame(flag, big))
	}
	require.Zero(t, testing.AllocsPerRun(50, func() {
		if err := w.WriteFrame(flag, big); err != nil {
			panic(err)
		}
	}), "large frames: writev")
}

// TestTCPIdleKeepsNoReference checks what the pool's counters cannot show:
// that a Reader parked after frames of every kind (whole, shared slices of
// one read, a large one, one whose header came in pieces) keeps no
// reference into a buffer it gave back, so that the garbage collector can
// free them all once the pool lets go.
func TestTCPIdleKeepsNoReference(t *testing.T) {
	for _, share := range []bool{false, true} {
		t.Run(fmt.Sprintf("share=%v", share), func(t *testing.T) {
			client, server := testnet.TCPPair(t)
			pool := &testnet.ForgetPool{}
			r, err := NewReader(server, kafkaNoStrip, WithPool(pool))
			require.NoError(t, err)
			r.shareAll = share
			frames := make(chan []byte, 64)
			errc := make(chan error, 1)
			go func() {
				for {
					f, err := r.ReadFrame()
					if err != nil {
						errc <- err
						return
					}
					frames <- append([]byte(nil), f.Bytes()...)
					f.Release()
				}
			}()
			frame := func(b []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...) }
			send := func(b []byte) {
				t.Helper()
				_, err := client.Write(b)
				require.NoError(t, err)
			}
			// A large frame.
			big := make([]byte, 1<<20)
			for i := range big {
				big[i] = byte(i * 7)
			}
			send(frame(big))
			require.Equal(t, big, <-frames)
			// A header in pieces.
			f := frame([]byte("split"))
			send(f[:2])
			testnet.WaitParked(t, readFrameFn)
			send(f[2:])
			require.Equal(t, "split", string(<-frames))

			// Whole frames, several in one write (last: with share, the
			// Reader keeps a descriptor of their buffer for the next one).
			var batch []byte
			for i := range 20 {
				batch = append(batch, frame([]byte(fmt.Sprint("frame ", i)))...)
			}
			send(batch)
			for i := range 20 {
				require.Equal(t, fmt.Sprint("frame ", i), string(<-frames))
			}
			testnet.WaitParked(t, readFrameFn)
			require.Zero(t, pool.InUseBytes())
			pool.RequireUnreferenced(t)
			client.Close()
			require.ErrorIs(t, <-errc, io.EOF)
		})
	}
}
