package alts

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/readyreader"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

var (
	testKey128   = []byte{0x1f, 0x8b, 0x08, 0x00, 0x00, 0x09, 0x6e, 0x88, 0x02, 0xff, 0xe2, 0xd2, 0x4c, 0xce, 0x4f, 0x49}
	testKeyRekey = func() []byte {
		k := make([]byte, 44)
		for i := range k {
			k[i] = byte(i)
		}
		return k
	}()
)

func keyFor(protocol string) []byte {
	if protocol == AES128GCM {
		return testKey128
	}
	return testKeyRekey
}

var protocols = []string{AES128GCM, AES128GCMRekey}

// bufConn is a net.Conn that reads from r and records what is written.
type bufConn struct {
	r      io.Reader
	mu     sync.Mutex
	w      bytes.Buffer
	closed bool
}

func (b *bufConn) Read(p []byte) (int, error) {
	if b.r == nil {
		return 0, io.EOF
	}
	return b.r.Read(p)
}

func (b *bufConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, net.ErrClosed
	}
	return b.w.Write(p)
}

func (b *bufConn) written() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.w.Bytes())
}

func (b *bufConn) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}
func (b *bufConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (b *bufConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (b *bufConn) SetDeadline(t time.Time) error      { return nil }
func (b *bufConn) SetReadDeadline(t time.Time) error  { return nil }
func (b *bufConn) SetWriteDeadline(t time.Time) error { return nil }

// sealFrames returns the frames side writes for msgs (one Write each).
func sealFrames(t testing.TB, protocol string, side Side, msgs ...[]byte) []byte {
	t.Helper()
	bc := &bufConn{}
	c, err := newConnUnguarded(bc, side, protocol, keyFor(protocol), WithPool(bufferpool.NewTiered()))
	require.NoError(t, err)
	for _, m := range msgs {
		_, err := c.Write(m)
		require.NoError(t, err)
	}
	return bc.written()
}

// reader returns a Conn of the given side that reads data, with its own pool.
func newReaderConn(t testing.TB, protocol string, side Side, r io.Reader, opts ...Option) (*Conn, *bufferpool.Tiered) {
	t.Helper()
	pool := bufferpool.NewTiered(bufferpool.WithDebug())
	c, err := newConnUnguarded(&bufConn{r: r}, side, protocol, keyFor(protocol), append([]Option{WithPool(pool)}, opts...)...)
	require.NoError(t, err)
	return c, pool
}

// readAll reads c until an error, with reads of chunk bytes.
func readAll(c io.Reader, chunk int) ([]byte, error) {
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

// refCipher is an independent reference implementation of the record
// protocols, written straight from the wire description, to check Conn's
// output against.
type refCipher struct {
	protocol string
	key      []byte
}

func (r refCipher) aead(t testing.TB, ctr [12]byte) (cipher.AEAD, []byte) {
	key := r.key
	nonce := ctr[:]
	if r.protocol == AES128GCMRekey {
		mac := hmac.New(sha256.New, r.key[:32])
		mac.Write(ctr[2:8])
		mac.Write([]byte{1})
		key = mac.Sum(nil)[:16]
		nonce = make([]byte, 12)
		for i := range nonce {
			nonce[i] = ctr[i] ^ r.key[32+i]
		}
	}
	b, err := aes.NewCipher(key)
	require.NoError(t, err)
	g, err := cipher.NewGCM(b)
	require.NoError(t, err)
	return g, nonce
}

func refCounter(side Side, n uint64) (c [12]byte) {
	binary.LittleEndian.PutUint64(c[:8], n)
	if side == ServerSide {
		c[11] = 0x80
	}
	return c
}

// frame seals one frame as sender side with counter value n.
func (r refCipher) frame(t testing.TB, sender Side, n uint64, pt []byte) []byte {
	g, nonce := r.aead(t, refCounter(sender, n))
	f := make([]byte, 8, 8+len(pt)+16)
	binary.LittleEndian.PutUint32(f, uint32(4+len(pt)+16))
	binary.LittleEndian.PutUint32(f[4:], 6)
	return g.Seal(f, nonce, pt, nil)
}

// decode opens the frames of data sent by sender, starting at counter
// first, and returns the plaintext of the longest valid prefix of frames.
func (r refCipher) decode(t testing.TB, sender Side, first uint64, data []byte) []byte {
	var out []byte
	for n := first; ; n++ {
		if len(data) < 8 {
			return out
		}
		l := binary.LittleEndian.Uint32(data)
		if l < 20 || l > MaxFrameSize || data[4] != 6 || uint64(len(data)) < 4+uint64(l) {
			return out
		}
		g, nonce := r.aead(t, refCounter(sender, n))
		pt, err := g.Open(nil, nonce, data[8:4+l], nil)
		if err != nil {
			return out
		}
		out = append(out, pt...)
		data = data[4+l:]
	}
}

// chunkReader returns data in pieces of the given sizes (cycling).
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := c.sizes[c.i%len(c.sizes)]
	c.i++
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// connPair returns a client and a server Conn over a loopback TCP
// connection (tcp) or net.Pipe, sharing pool.
func connPair(t testing.TB, protocol string, tcp bool, pool bufferpool.Pool, opts ...Option) (*Conn, *Conn) {
	t.Helper()
	var a, b net.Conn
	if tcp {
		a, b = testnet.TCPPair(t)
	} else {
		a, b = net.Pipe()
	}
	opts = append([]Option{WithPool(pool)}, opts...)
	cl, err := newConnUnguarded(a, ClientSide, protocol, keyFor(protocol), opts...)
	require.NoError(t, err)
	sv, err := newConnUnguarded(b, ServerSide, protocol, keyFor(protocol), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close(); sv.Close() })
	return cl, sv
}

// chanConn is a net.Conn whose reads come from chunks sent on a channel.
// It is also a readyreader.Reader that, like the Unix RawConn path, takes a
// buffer only once a chunk has arrived, so tests can check what a Conn pins
// while it waits independently of the platform's readyreader.
type chanConn struct {
	bufConn
	ch   chan []byte
	rest []byte
	eof  bool
}

func newChanConn() *chanConn { return &chanConn{ch: make(chan []byte, 100)} }

func (c *chanConn) next() bool {
	if len(c.rest) > 0 {
		return true
	}
	if c.eof {
		return false
	}
	b, ok := <-c.ch
	if !ok {
		c.eof = true
		return false
	}
	c.rest = b
	return true
}

// waitIdle waits until the reader has taken every chunk sent and waits for
// the next one (proved by its goroutine's stack, not by a sleep).
func (c *chanConn) waitIdle(t testing.TB) {
	t.Helper()
	require.Eventually(t, func() bool { return len(c.ch) == 0 }, 30*time.Second, time.Millisecond)
	testnet.WaitBlocked(t, "alts.(*chanConn).next")
}

func (c *chanConn) Read(p []byte) (int, error) {
	if !c.next() {
		return 0, io.EOF
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

func (c *chanConn) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if !c.next() {
		return nil, 0, io.EOF
	}
	buf := pool.Get(size)
	n := copy(*buf, c.rest)
	c.rest = c.rest[n:]
	return buf, n, nil
}

// pinsWhileWaiting reports whether readyreader.New(c) takes a buffer before
// data is there (the blocking fallback). It probes with a read that times
// out.
func pinsWhileWaiting(t testing.TB, c net.Conn) bool {
	t.Helper()
	probe := &countingPool{Pool: bufferpool.NewTiered()}
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Millisecond)))
	buf, n, err := readyreader.New(c).ReadOnReady(16, probe)
	require.NoError(t, c.SetReadDeadline(time.Time{}))
	require.Zero(t, n)
	require.Nil(t, buf)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	return probe.max > 0
}

// minHold is the smallest buffer the record reader keeps a partial frame in.
const minHold = 4 << 10

// mustConn is newConnUnguarded, which must succeed: tests replay frames
// sealed under fixed keys, which NewConn would refuse the second time.
func mustConn(t testing.TB, c net.Conn, side Side, protocol string, key []byte, opts ...Option) *Conn {
	t.Helper()
	ac, err := newConnUnguarded(c, side, protocol, key, opts...)
	require.NoError(t, err)
	return ac
}

// randomKey returns a fresh key for protocol.
func randomKey(t testing.TB, protocol string) []byte {
	k := make([]byte, len(keyFor(protocol)))
	rand.Read(k)
	return k
}
