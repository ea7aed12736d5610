package alts

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
)

// errConn is a net.Conn whose first Read fails with err; later Reads
// return data.
type errConn struct {
	bufConn
	err  error
	once sync.Once
}

func (c *errConn) Read(p []byte) (int, error) {
	var err error
	c.once.Do(func() { err = c.err })
	if err != nil {
		return 0, err
	}
	return c.bufConn.Read(p)
}

var errBoom = errors.New("boom")

// TestReadErrorsSticky checks that a read error other than a timeout ends
// the read side for good, as in crypto/tls: the bytes that follow are never
// returned.
func TestReadErrorsSticky(t *testing.T) {
	data := sealFrames(t, AES128GCM, ClientSide, []byte("after the error"))
	c := mustConn(t, &errConn{bufConn: bufConn{r: bytes.NewReader(data)}, err: errBoom}, ServerSide, AES128GCM, keyFor(AES128GCM))
	_, err := c.Read(make([]byte, 100))
	require.ErrorIs(t, err, errBoom)
	n, err := c.Read(make([]byte, 100))
	require.Zero(t, n)
	require.ErrorIs(t, err, errBoom, "a read error must be sticky")
}

// stuckConn is a net.Conn whose Read blocks until release is closed and
// ignores Close, as some wrappers do.
type stuckConn struct {
	bufConn
	release chan struct{}
}

func (c *stuckConn) Read(p []byte) (int, error) {
	<-c.release
	return 0, io.EOF
}

// TestCloseDoesNotWaitForRead closes a Conn while a Read is blocked in a
// net.Conn whose Close does not interrupt its Read: Close must return
// anyway, and the Read gives its buffers back when it returns.
func TestCloseDoesNotWaitForRead(t *testing.T) {
	sc := &stuckConn{release: make(chan struct{})}
	pool := bufferpool.NewTiered(bufferpool.WithDebug())
	c := mustConn(t, sc, ServerSide, AES128GCM, keyFor(AES128GCM), WithPool(pool))
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		readErr <- err
	}()
	testnet.WaitBlocked(t, "alts.(*stuckConn).Read")
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		close(sc.release)
		<-closed
		<-readErr
		t.Fatal("Close waited for a Read in progress")
	}
	close(sc.release)
	require.ErrorIs(t, <-readErr, net.ErrClosed)
	require.Zero(t, pool.Stats().InUseBytes)
}

// snoopPool is a pool that checks every buffer put back for a marker that
// only plaintext contains.
type snoopPool struct {
	bufferpool.Pool
	marker []byte
	mu     sync.Mutex
	leaks  int
}

func (p *snoopPool) Put(b *[]byte) {
	if bytes.Contains((*b)[:cap(*b)], p.marker) {
		p.mu.Lock()
		p.leaks++
		p.mu.Unlock()
	}
	p.Pool.Put(b)
}

func (p *snoopPool) leaked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leaks
}

// TestPlaintextClearedBeforePut reads frames in every way a Conn decrypts
// them (in place and handed out in pieces, straight into the caller's
// slice, into buffers from the caller's pool, with frames cut across reads,
// a shrink, an authentication failure and Close with plaintext buffered)
// and checks that no buffer reaches its pool with plaintext in it.
func TestPlaintextClearedBeforePut(t *testing.T) {
	marker := []byte("PLAINTEXT-MARKER-0123456789")
	msg := bytes.Repeat(marker, 200) // 5400 B: over a 4 KiB hold
	for _, protocol := range protocols {
		frames := sealFrames(t, protocol, ClientSide, marker, msg, marker, msg, msg)
		tamper := bytes.Clone(frames)
		tamper[len(tamper)-1] ^= 1
		cases := []struct {
			name   string
			data   []byte
			sizes  []int
			read   func(c *Conn, out *snoopPool) error
			closed bool
		}{
			{"small reads", frames, []int{1 << 20}, func(c *Conn, _ *snoopPool) error { _, err := readAll(c, 7); return err }, false},
			{"large reads", frames, []int{1 << 20}, func(c *Conn, _ *snoopPool) error { _, err := readAll(c, 1<<16); return err }, false},
			{"chunked", frames, []int{3, 100, 5000, 17}, func(c *Conn, _ *snoopPool) error { _, err := readAll(c, 100); return err }, false},
			{"ReadOnReady", frames, []int{1 << 20}, readOnReadyAll(100), false},
			{"ReadOnReady whole frames", frames, []int{1 << 20}, readOnReadyAll(1 << 16), false},
			{"tampered small", tamper, []int{1 << 20}, func(c *Conn, _ *snoopPool) error { _, err := readAll(c, 7); return err }, false},
			{"tampered ReadOnReady", tamper, []int{1 << 20}, readOnReadyAll(1 << 16), false},
			{"close with plaintext buffered", frames, []int{1 << 20}, func(c *Conn, _ *snoopPool) error {
				_, err := c.Read(make([]byte, 5))
				return err
			}, true},
		}
		for _, tc := range cases {
			t.Run(protocol+"/"+tc.name, func(t *testing.T) {
				own := &snoopPool{Pool: bufferpool.NewTiered(), marker: marker}
				out := &snoopPool{Pool: bufferpool.NewTiered(), marker: marker}
				c := mustConn(t, &bufConn{r: &chunkReader{data: tc.data, sizes: tc.sizes}}, ServerSide, protocol, keyFor(protocol), WithPool(own))
				err := tc.read(c, out)
				if tc.closed {
					require.NoError(t, err)
					require.NoError(t, c.Close())
				} else {
					require.Error(t, err)
				}
				require.Zero(t, own.leaked(), "plaintext went back to the Conn's pool")
				require.Zero(t, out.leaked(), "plaintext went back to the caller's pool")
			})
		}
	}
}

// readOnReadyAll reads with ReadOnReady until an error; the test plays the
// caller and clears what it received before putting it back.
func readOnReadyAll(size int) func(c *Conn, out *snoopPool) error {
	return func(c *Conn, out *snoopPool) error {
		for {
			buf, n, err := c.ReadOnReady(size, out)
			if buf != nil {
				clear((*buf)[:n])
				out.Put(buf)
			}
			if err != nil {
				return err
			}
		}
	}
}

// maxPool records the largest Get.
type maxPool struct {
	bufferpool.Pool
	mu  sync.Mutex
	max int
}

func (p *maxPool) Get(n int) *[]byte {
	p.mu.Lock()
	p.max = max(p.max, n)
	p.mu.Unlock()
	return p.Pool.Get(n)
}

func (p *maxPool) largest() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.max
}

// TestReadOnReadyTakesWhatTheFrameNeeds checks that ReadOnReady takes no
// more from the caller's pool than the plaintext it delivers: gRPC asks for
// 32 KiB at a time, and a 10-byte record must not cost 32 KiB.
func TestReadOnReadyTakesWhatTheFrameNeeds(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			big := bytes.Repeat([]byte("x"), 3000)
			data := sealFrames(t, protocol, ClientSide, []byte("ten bytes!"), big)
			c, _ := newReaderConn(t, protocol, ServerSide, bytes.NewReader(data))
			out := &maxPool{Pool: bufferpool.NewTiered(bufferpool.WithDebug())}
			buf, n, err := c.ReadOnReady(32<<10, out)
			require.NoError(t, err)
			require.Equal(t, "ten bytes!", string((*buf)[:n]))
			out.Put(buf)
			require.Equal(t, 10, out.largest(), "a 10-byte frame took a larger buffer")
			// A frame larger than size arrives in pieces of size.
			got := 0
			for got < len(big) {
				buf, n, err := c.ReadOnReady(1000, out)
				require.NoError(t, err)
				got += n
				out.Put(buf)
			}
			require.Equal(t, 1000, out.largest())
		})
	}
}

// TestWriteTimeoutRecovers writes through a connection that takes a given
// number of bytes and then times out, as a socket with a full send buffer
// does at its deadline: the Conn must stay usable, report how many bytes are
// committed, and finish a frame cut midway before anything else.
func TestWriteTimeoutRecovers(t *testing.T) {
	const payload = MinFrameSize - frameOverhead
	for _, protocol := range protocols {
		for _, allow := range []int{0, 10, MinFrameSize, MinFrameSize + 1, 2*MinFrameSize - 1} {
			t.Run(protocol+"/allow="+itoa(allow), func(t *testing.T) {
				sc := &stallConn{allow: allow}
				pool := bufferpool.NewTiered(bufferpool.WithDebug())
				c := mustConn(t, sc, ClientSide, protocol, keyFor(protocol), WithMaxFrameSize(MinFrameSize), WithPool(pool))
				msg := make([]byte, 3*payload)
				for i := range msg {
					msg[i] = byte(i * 13)
				}
				n, err := c.Write(msg)
				require.ErrorIs(t, err, os.ErrDeadlineExceeded)
				frames := (allow + MinFrameSize - 1) / MinFrameSize
				require.Equal(t, frames*payload, n, "committed bytes")
				sc.unblock()
				_, err = c.Write([]byte("next"))
				require.NoError(t, err, "a timed-out Write broke the Conn")
				want := append(bytes.Clone(msg[:n]), "next"...)
				got := refCipher{protocol, keyFor(protocol)}.decode(t, ClientSide, 0, sc.written())
				require.Equal(t, want, got)
				require.Len(t, sc.written(), frames*MinFrameSize+frameOverhead+len("next"), "undone frames were not sent")
				c.Close()
				require.Zero(t, pool.Stats().InUseBytes)
			})
		}
	}
}

// stallConn takes allow bytes and then fails writes with a timeout until
// unblock.
type stallConn struct {
	bufConn
	wmu   sync.Mutex
	allow int
	open  bool
}

func (s *stallConn) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.open {
		n, _ := s.bufConn.Write(p)
		return n, nil
	}
	n := min(len(p), s.allow)
	s.allow -= n
	s.bufConn.Write(p[:n])
	if n < len(p) {
		return n, os.ErrDeadlineExceeded
	}
	return n, nil
}

func (s *stallConn) unblock() {
	s.wmu.Lock()
	s.open = true
	s.wmu.Unlock()
}

// TestAEADPerDirection checks that the two directions of a Conn never
// share an AEAD: crypto/cipher promises nothing about concurrent use of one.
func TestAEADPerDirection(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			cl, sv := connPair(t, protocol, true, bufferpool.NewTiered())
			for _, dir := range []struct{ w, r *Conn }{{cl, sv}, {sv, cl}} {
				_, err := dir.w.Write([]byte("hello"))
				require.NoError(t, err)
				buf := make([]byte, 5)
				_, err = io.ReadFull(dir.r, buf)
				require.NoError(t, err)
			}
			for _, c := range []*Conn{cl, sv} {
				require.NotZero(t, c.in.weak)
				require.NotZero(t, c.out.weak)
				require.False(t, sameAEAD(c), "%v: one AEAD for both directions", c.Side())
			}
		})
	}
}

// zeroConn returns (0, nil) from Read zeros times, then reads r.
type zeroConn struct {
	bufConn
	zeros int
}

func (z *zeroConn) Read(p []byte) (int, error) {
	if z.zeros > 0 {
		z.zeros--
		return 0, nil
	}
	return z.bufConn.Read(p)
}

// TestReadNoProgress checks that a connection whose reads return nothing
// (more than the 100 in a row readyreader allows) fails a Read with
// io.ErrNoProgress without breaking the Conn.
func TestReadNoProgress(t *testing.T) {
	data := sealFrames(t, AES128GCM, ClientSide, []byte("late"))
	zc := &zeroConn{bufConn: bufConn{r: bytes.NewReader(data)}, zeros: 150}
	c := mustConn(t, zc, ServerSide, AES128GCM, keyFor(AES128GCM))
	_, err := c.Read(make([]byte, 10))
	require.ErrorIs(t, err, io.ErrNoProgress)
	got, err := readAll(c, 10)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, "late", string(got))
}

// shortConn writes at most max bytes per call and reports no error.
type shortConn struct {
	bufConn
	max int
}

func (s *shortConn) Write(p []byte) (int, error) {
	n := min(len(p), s.max)
	s.bufConn.Write(p[:n])
	return n, nil
}

// TestShortWrite checks that a connection that writes less than it was
// given without an error (which io.Writer forbids) makes Write fail with
// io.ErrShortWrite, committing the frame it cut, which the next Write
// completes first.
func TestShortWrite(t *testing.T) {
	sc := &shortConn{max: 30}
	pool := bufferpool.NewTiered(bufferpool.WithDebug())
	c := mustConn(t, sc, ClientSide, AES128GCM, keyFor(AES128GCM), WithPool(pool))
	n, err := c.Write([]byte("a message longer than thirty bytes"))
	require.ErrorIs(t, err, io.ErrShortWrite)
	require.Equal(t, 34, n, "the cut frame is committed")
	sc.max = 1 << 20
	_, err = c.Write([]byte("!"))
	require.NoError(t, err)
	got := refCipher{AES128GCM, keyFor(AES128GCM)}.decode(t, ClientSide, 0, sc.written())
	require.Equal(t, "a message longer than thirty bytes!", string(got))
	require.NoError(t, c.Close())
	require.Zero(t, pool.Stats().InUseBytes)
}
