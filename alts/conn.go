package alts

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/readyreader"
)

// Side says which end of the connection a Conn is. It decides the direction
// bit of the frame counters: frames sent by the server have the high bit of
// counter byte 11 set.
type Side int

const (
	// ClientSide is the end that started the handshake.
	ClientSide Side = iota
	// ServerSide is the end that accepted it.
	ServerSide
)

// String returns "client" or "server".
func (s Side) String() string {
	switch s {
	case ClientSide:
		return "client"
	case ServerSide:
		return "server"
	}
	return fmt.Sprintf("Side(%d)", int(s))
}

// Record protocols, as named in the ALTS handshake.
const (
	// AES128GCM seals every frame with AES-128-GCM under one 16-byte key;
	// the nonce is the frame counter. A direction allows 2^40 frames.
	AES128GCM = "ALTSRP_GCM_AES128"
	// AES128GCMRekey takes a 44-byte key: a 32-byte key-derivation key and
	// a 12-byte nonce mask. Every 2^16 frames it derives a new AES-128-GCM
	// key from the derivation key and counter bytes 2..7; the nonce is the
	// counter XOR the mask. A direction allows 2^64 frames.
	AES128GCMRekey = "ALTSRP_GCM_AES128_REKEY"
)

// Frame sizes. A frame's size counts its 24 bytes of overhead (length,
// type, tag) and its plaintext.
const (
	// MinFrameSize is the smallest value WithMaxFrameSize accepts, and the
	// frame size grpc-go writes unless a larger one was negotiated.
	MinFrameSize = 4 << 10
	// DefaultFrameSize is the largest frame a Conn writes by default (the
	// default of gRPC C-core).
	DefaultFrameSize = 16 << 10
	// MaxFrameSize is the largest frame a Conn writes or accepts: the
	// length field (which does not count itself) may be at most 1 MiB, as
	// in grpc-go and C-core.
	MaxFrameSize = 1 << 20
)

const (
	// wakeReadSize is how much a read asks for when no frame is buffered
	// and the readyreader waits without a buffer (a bare socket on Unix):
	// the buffer is taken once bytes have arrived, and the read takes all
	// that is queued, up to this size.
	wakeReadSize = 64 << 10
	// blockingReadSize replaces wakeReadSize when the readyreader is the
	// blocking fallback (Windows, or a net.Conn that is not a bare socket),
	// whose buffer is taken before the read and pinned while the peer is
	// silent. It holds one whole frame of up to 16 KiB of plaintext (so
	// neither a frame of DefaultFrameSize nor one of 16 KiB of payload plus
	// overhead has to be moved to a larger buffer) and is a size class of
	// the default pool: about what an idle crypto/tls connection keeps
	// (16-21 KiB), not 64 KiB. Larger frames grow the buffer as their bytes
	// arrive.
	blockingReadSize = 20 << 10
	// minHold is the smallest buffer a partial frame is kept in.
	minHold = 4 << 10
	// writeChunk is the most ciphertext one Write puts in one buffer (and
	// one write call); at least one frame always fits.
	writeChunk = 512 << 10
)

var (
	// ErrAuth means a frame failed authentication: it was tampered with,
	// replayed, reordered, reflected, or sealed under another key. It is
	// sticky: every later Read returns it.
	ErrAuth = errors.New("alts: message authentication failed")
	// ErrMalformed is wrapped by the errors for frames that cannot be
	// valid: a length below 4 or above MaxFrameSize, too short for a tag,
	// or a type whose low byte is not 6. It is sticky.
	ErrMalformed = errors.New("alts: malformed frame")
	// ErrCounterOverflow means a direction has used every counter value
	// its record protocol allows; the connection cannot go on in that
	// direction and must be replaced. It is sticky.
	ErrCounterOverflow = errors.New("alts: frame counter exhausted")
	// ErrUnknownProtocol is wrapped by NewConn's error for a record
	// protocol other than AES128GCM and AES128GCMRekey.
	ErrUnknownProtocol = errors.New("alts: unknown record protocol")
	// ErrKeySize is wrapped by NewConn's error for a key of the wrong
	// length for the record protocol.
	ErrKeySize = errors.New("alts: wrong key size")

	errClosed    = fmt.Errorf("alts: use of closed connection: %w", net.ErrClosed)
	errTruncated = fmt.Errorf("alts: connection ended inside a frame: %w", io.ErrUnexpectedEOF)
	errSize      = errors.New("alts: ReadOnReady with size < 1")
)

func keySizeError(protocol string, got, want int) error {
	return fmt.Errorf("%w: %s needs a %d-byte key, got %d bytes", ErrKeySize, protocol, want, got)
}

func unknownProtocolError(protocol string) error {
	return fmt.Errorf("%w %q (want %q or %q)", ErrUnknownProtocol, protocol, AES128GCM, AES128GCMRekey)
}

// Option configures a Conn made by NewConn.
type Option func(*connConfig)

type connConfig struct {
	maxFrame int
	pool     bufferpool.Pool
	leftover []byte
}

// WithMaxFrameSize sets the largest frame the Conn writes, overhead
// included: between MinFrameSize (4 KiB) and MaxFrameSize (1 MiB); NewConn
// refuses other values. The default is DefaultFrameSize (16 KiB). It does
// not limit what the Conn reads: every frame up to MaxFrameSize is accepted,
// as the peer may have been configured differently.
func WithMaxFrameSize(n int) Option {
	return func(c *connConfig) { c.maxFrame = n }
}

// WithPool sets the pool that the Conn takes its read and write buffers
// from. The default is bufferpool.Default().
func WithPool(p bufferpool.Pool) Option {
	return func(c *connConfig) { c.pool = p }
}

// WithLeftover hands the Conn bytes that a handshake read from the
// connection past its own end: they are the beginning of the record stream
// and are decrypted before anything read from the connection. NewConn
// copies b; the caller keeps ownership of it.
func WithLeftover(b []byte) Option {
	return func(c *connConfig) { c.leftover = b }
}

// Conn is a connection protected by the ALTS record protocol. It is a
// net.Conn and a readyreader.Reader. One goroutine may read (Read or
// ReadOnReady) while another writes; Close, the deadline setters and the
// address methods may be called from any goroutine at any time.
type Conn struct {
	conn     net.Conn
	rr       readyreader.Reader
	readSize int // what a read asks for: wakeReadSize or blockingReadSize
	pool     bufferpool.Pool
	side     Side
	payload  int // plaintext bytes in a full frame written by this side

	// tlsState is the TLS 1.3 handshake that established the keys, set by
	// Client and Server after NewConn; nil for a bare NewConn.
	tlsState *tls.ConnectionState

	closed atomic.Bool

	keys keySchedule // shared by in and out

	rmu   sync.Mutex
	in    recordCipher
	rbuf  *[]byte // ciphertext buffer from pool; nil when nothing is buffered
	rpos  int     // unparsed bytes are (*rbuf)[rpos:rend]
	rend  int
	plain []byte // decrypted, not yet read; aliases *rbuf
	rerr  error  // sticky read error
	perr  error  // error of the last underlying read, reported once its bytes are used
	wake  wakePool

	wmu  sync.Mutex
	out  recordCipher
	werr error // sticky write error
}

// NewConn returns a Conn that runs the record protocol (AES128GCM or
// AES128GCMRekey) with key over c, as the given side. The Conn takes
// ownership of c (Close closes it); key is not retained. The other end must
// use the same protocol and key and the other side.
func NewConn(c net.Conn, side Side, protocol string, key []byte, opts ...Option) (*Conn, error) {
	cfg := connConfig{maxFrame: DefaultFrameSize}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxFrame < MinFrameSize || cfg.maxFrame > MaxFrameSize {
		return nil, fmt.Errorf("alts: max frame size %d outside [%d, %d]", cfg.maxFrame, MinFrameSize, MaxFrameSize)
	}
	if side != ClientSide && side != ServerSide {
		return nil, fmt.Errorf("alts: invalid side %d", int(side))
	}
	if cfg.pool == nil {
		cfg.pool = bufferpool.Default()
	}
	ac := &Conn{
		conn:     c,
		rr:       readyreader.NewNonBlocking(c),
		readSize: wakeReadSize,
		pool:     cfg.pool,
		side:     side,
		payload:  cfg.maxFrame - frameOverhead,
	}
	if ac.rr == nil {
		// The blocking fallback pins its buffer while it waits: ask
		// for less.
		ac.rr, ac.readSize = readyreader.New(c), blockingReadSize
	}
	aead, err := ac.keys.init(protocol, key)
	if err != nil {
		return nil, err
	}
	// Both directions share one frame AEAD while their frame keys are
	// equal (see keySchedule). Server-sent frames carry the direction bit.
	ac.out.attach(&ac.keys, aead, &ac.in, side == ServerSide)
	ac.in.attach(&ac.keys, aead, &ac.out, side == ClientSide)
	ac.wake.c = ac
	if len(cfg.leftover) > 0 {
		ac.rbuf = ac.pool.Get(len(cfg.leftover))
		ac.rend = copy(*ac.rbuf, cfg.leftover)
	}
	return ac, nil
}

// setCounters sets the counter values of the next frame written and the
// next frame read. It is a test hook.
func (c *Conn) setCounters(out, in [counterSize]byte) {
	c.wmu.Lock()
	c.out.ctr.set(out)
	c.wmu.Unlock()
	c.rmu.Lock()
	c.in.ctr.set(in)
	c.rmu.Unlock()
}

// ConnectionState reports the TLS 1.3 handshake that established the
// record keys when the Conn was made by Client or Server (peer certificates,
// negotiated ALPN, ...). For a Conn made by NewConn it returns the zero
// value.
//
// The state's ExportKeyingMaterial still works, for channel binding; called
// with [ExporterLabel] and the context "ALTSRP_GCM_AES128_REKEY" it returns
// the connection's record key, so treat the state as a secret of the
// connection.
func (c *Conn) ConnectionState() tls.ConnectionState {
	if c.tlsState == nil {
		return tls.ConnectionState{}
	}
	return *c.tlsState
}

// NetConn returns the underlying connection. Reading from or writing to it
// directly corrupts the record stream.
func (c *Conn) NetConn() net.Conn { return c.conn }

// Protocol returns the record protocol the Conn runs.
func (c *Conn) Protocol() string {
	if c.keys.rekey {
		return AES128GCMRekey
	}
	return AES128GCM
}

// Side returns which end of the connection the Conn is.
func (c *Conn) Side() Side { return c.side }

// LocalAddr returns the local address of the underlying connection.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the remote address of the underlying connection.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the underlying
// connection. A Read or Write that times out returns an error wrapping
// os.ErrDeadlineExceeded. A timed-out Read loses nothing and may be retried;
// after a timed-out Write the stream may hold part of a frame, so every later
// Write returns the same error (as with crypto/tls).
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the underlying connection.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the underlying connection.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// Close closes the underlying connection, which unblocks a Read or Write in
// progress, and returns the Conn's read buffers to the pool. Later calls
// return an error wrapping net.ErrClosed.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return errClosed
	}
	err := c.conn.Close()
	c.rmu.Lock()
	c.releaseRead()
	c.rmu.Unlock()
	return err
}

// ---------------------------------------------------------------- reading

// Read reads decrypted bytes into p. It returns the plaintext of at most one
// frame per call. Bytes of a frame that do not fit in p are kept (in the
// Conn's read buffer) for the next Read; once everything received has been
// read, the Conn owns no buffer.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	_, n, err := c.read(p, 0, nil)
	return n, err
}

// ReadOnReady implements readyreader.Reader: it waits, without holding a
// buffer, until plaintext is available, then takes a buffer of size bytes
// from pool and copies up to size bytes of plaintext into it (decrypting
// straight into it when a whole frame fits). The caller owns the returned
// buffer (nil when n == 0) and must Put it back to pool. n > 0 bytes must be
// processed before err is considered.
func (c *Conn) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if size < 1 {
		return nil, 0, errSize
	}
	return c.read(nil, size, pool)
}

// read is Read (pool == nil: deliver into p) and ReadOnReady (deliver into a
// buffer of size bytes from pool).
func (c *Conn) read(p []byte, size int, pool bufferpool.Pool) (*[]byte, int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return nil, 0, errClosed
	}
	if c.rerr != nil {
		return nil, 0, c.rerr
	}
	room := len(p)
	if pool != nil {
		room = size
	}
	for {
		if len(c.plain) > 0 {
			var buf *[]byte
			if pool != nil {
				buf = pool.Get(size)
				p = *buf
			}
			n := copy(p, c.plain)
			c.plain = c.plain[n:]
			c.releaseIfDrained()
			return buf, n, nil
		}
		ct, err := c.nextFrame()
		if err != nil {
			return nil, 0, c.fail(err)
		}
		if ct == nil {
			c.releaseIfDrained() // shrink a large buffer holding a partial frame
			if err := c.fill(); err != nil {
				return nil, 0, err
			}
			continue
		}
		ptLen := len(ct) - tagSize
		if ptLen > 0 && room >= ptLen {
			// Decrypt straight into the destination.
			var buf *[]byte
			if pool != nil {
				buf = pool.Get(size)
				p = *buf
			}
			out, err := c.in.open(p[:0], ct)
			if err != nil {
				clear(p[:ptLen])
				if buf != nil {
					pool.Put(buf)
				}
				return nil, 0, c.fail(err)
			}
			c.releaseIfDrained()
			return buf, len(out), nil
		}
		// Decrypt in place and hand out in pieces (or skip an empty frame).
		out, err := c.in.open(ct[:0], ct)
		if err != nil {
			return nil, 0, c.fail(err)
		}
		c.plain = out
		c.releaseIfDrained()
	}
}

// nextFrame returns the ciphertext and tag of the next complete frame in the
// read buffer and consumes it, or nil if no complete frame is buffered. It
// checks the header as soon as its bytes are there, before any buffer is
// sized for the frame.
func (c *Conn) nextFrame() ([]byte, error) {
	if c.rbuf == nil {
		return nil, nil
	}
	b := (*c.rbuf)[c.rpos:c.rend]
	if len(b) < lenFieldSize {
		return nil, nil
	}
	length := binary.LittleEndian.Uint32(b)
	if length < typeFieldSize+tagSize || length > MaxFrameSize {
		return nil, fmt.Errorf("%w: length field %d outside [%d, %d]", ErrMalformed, length, typeFieldSize+tagSize, MaxFrameSize)
	}
	if len(b) < headerSize {
		return nil, nil
	}
	if t := binary.LittleEndian.Uint32(b[lenFieldSize:]); t&0xff != recordMsgType {
		return nil, fmt.Errorf("%w: message type %#x, want low byte %#x", ErrMalformed, t, recordMsgType)
	}
	total := lenFieldSize + int(length)
	if len(b) < total {
		return nil, nil
	}
	c.rpos += total
	return b[headerSize:total:total], nil
}

// frameNeed is the total size of the partially buffered frame, or
// headerSize while its length is not known yet.
func (c *Conn) frameNeed(b []byte) int {
	if len(b) < lenFieldSize {
		return headerSize
	}
	return lenFieldSize + int(binary.LittleEndian.Uint32(b))
}

// fill reads more bytes from the connection. With nothing buffered it waits
// through the readyreader, holding no buffer. With part of a frame buffered
// it reads into the free space of the buffer if there is a useful amount,
// and otherwise moves the partial frame into a larger buffer taken only
// when bytes have arrived (wakePool).
func (c *Conn) fill() error {
	if c.perr != nil {
		err := c.perr
		c.perr = nil
		return c.readErr(err)
	}
	if c.rbuf == nil {
		buf, n, err := c.rr.ReadOnReady(c.readSize, c.pool)
		if n > 0 {
			c.rbuf, c.rpos, c.rend = buf, 0, n
			c.perr = err
			return nil
		}
		if buf != nil {
			c.pool.Put(buf)
		}
		return c.readErr(err)
	}
	b := *c.rbuf
	k := c.rend - c.rpos
	need := c.frameNeed(b[c.rpos:c.rend])
	free := cap(b) - c.rend
	if free >= min(need-k, minHold) {
		n, err := c.conn.Read(b[c.rend:cap(b)])
		if n > 0 {
			c.rend += n
			c.perr = err
			return nil
		}
		return c.readErr(err)
	}
	// Grow: the partial frame moves to the front of a new buffer of
	// k + readLen bytes once bytes have arrived.
	readLen := max(c.readSize, min(need-k, k))
	c.wake.k = k
	buf, n, err := c.rr.ReadOnReady(readLen, &c.wake)
	switch {
	case n == 0:
		if buf != nil {
			c.wake.Put(buf)
		}
		c.wake.reset()
		return c.readErr(err)
	case buf == &c.wake.view:
		// The wake buffer holds the partial frame and then the new bytes.
		c.pool.Put(c.rbuf)
		c.rbuf, c.rpos, c.rend = c.wake.orig, 0, k+n
		c.wake.reset()
	default:
		// The readyreader used a buffer of its own: merge.
		c.wake.reset()
		nb := c.pool.Get(k + n)
		copy(*nb, b[c.rpos:c.rend])
		copy((*nb)[k:], (*buf)[:n])
		c.wake.Put(buf)
		c.pool.Put(c.rbuf)
		c.rbuf, c.rpos, c.rend = nb, 0, k+n
	}
	c.perr = err
	return nil
}

// readErr turns an error of the underlying connection into Read's error.
func (c *Conn) readErr(err error) error {
	if err == nil {
		return io.ErrNoProgress
	}
	if errors.Is(err, io.EOF) {
		if c.rbuf != nil && c.rend > c.rpos {
			return c.fail(errTruncated)
		}
		return io.EOF
	}
	return err
}

// fail makes err the sticky read error and drops everything buffered.
func (c *Conn) fail(err error) error {
	c.rerr = err
	c.releaseRead()
	return err
}

// releaseRead returns the read buffer to the pool.
func (c *Conn) releaseRead() {
	c.plain = nil
	if c.rbuf != nil {
		clear((*c.rbuf)[:c.rend])
		c.pool.Put(c.rbuf)
		c.rbuf = nil
	}
	c.rpos, c.rend = 0, 0
}

// releaseIfDrained gives the read buffer back when it holds no plaintext and
// no unparsed bytes, and otherwise shrinks it when a partial frame is all it
// holds and the buffer is much larger than what has arrived.
func (c *Conn) releaseIfDrained() {
	if len(c.plain) > 0 || c.rbuf == nil {
		return
	}
	k := c.rend - c.rpos
	if k == 0 {
		c.pool.Put(c.rbuf)
		c.rbuf, c.rpos, c.rend = nil, 0, 0
		return
	}
	b := *c.rbuf
	need := c.frameNeed(b[c.rpos:c.rend])
	if need <= k {
		return // a complete frame is waiting
	}
	target := min(need, max(2*k, minHold))
	if cap(b) <= 2*target {
		return
	}
	nb := c.pool.Get(target)
	copy(*nb, b[c.rpos:c.rend])
	c.pool.Put(c.rbuf)
	c.rbuf, c.rpos, c.rend = nb, 0, k
}

// wakePool is the pool a Conn hands its readyreader while part of a frame
// is buffered: the first Get takes a buffer of k+n bytes from the Conn's
// pool, copies the k buffered bytes to its front and returns a view of the
// n bytes after them, so the new bytes land right behind the partial frame
// without a second copy, and the larger buffer is taken only once bytes
// have arrived.
type wakePool struct {
	c    *Conn
	k    int
	orig *[]byte // the pool buffer behind view
	view []byte
}

func (w *wakePool) Get(n int) *[]byte {
	if w.orig != nil {
		return w.c.pool.Get(n)
	}
	c := w.c
	w.orig = c.pool.Get(w.k + n)
	copy(*w.orig, (*c.rbuf)[c.rpos:c.rend])
	w.view = (*w.orig)[w.k : w.k+n]
	return &w.view
}

func (w *wakePool) Put(b *[]byte) {
	if b == &w.view {
		w.c.pool.Put(w.orig)
		w.orig, w.view = nil, nil
		return
	}
	w.c.pool.Put(b)
}

func (w *wakePool) reset() { w.orig, w.view, w.k = nil, nil, 0 }

// ---------------------------------------------------------------- writing

// Write encrypts b into frames of at most the maximum frame size and writes
// them, several frames per write call. On error it returns the number of
// bytes of b whose frames were written completely; the error then sticks,
// since the peer may have received part of a frame.
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return 0, errClosed
	}
	if c.werr != nil {
		return 0, c.werr
	}
	full := c.payload + frameOverhead
	perChunk := max(1, writeChunk/full) * c.payload
	written := 0
	for written < len(b) {
		chunk := b[written:min(len(b), written+perChunk)]
		frames := (len(chunk) + c.payload - 1) / c.payload
		var overflow bool
		if left := c.out.framesLeft(); uint64(frames) > left {
			frames, overflow = int(left), true
			chunk = chunk[:min(len(chunk), frames*c.payload)]
		}
		if frames > 0 {
			size := len(chunk) + frames*frameOverhead
			buf := c.pool.Get(size)
			w := *buf
			off := 0
			for pt := chunk; len(pt) > 0; {
				m := min(len(pt), c.payload)
				binary.LittleEndian.PutUint32(w[off:], uint32(typeFieldSize+m+tagSize))
				binary.LittleEndian.PutUint32(w[off+lenFieldSize:], recordMsgType)
				if _, err := c.out.seal(w[off+headerSize:off+headerSize], pt[:m]); err != nil {
					c.pool.Put(buf)
					c.werr = err
					return written, err
				}
				off += headerSize + m + tagSize
				pt = pt[m:]
			}
			n, err := c.conn.Write(w[:size])
			c.pool.Put(buf)
			if err != nil {
				if n < size {
					written += n / full * c.payload
				} else {
					written += len(chunk)
				}
				c.werr = err
				return written, err
			}
			written += len(chunk)
		}
		if overflow {
			c.werr = ErrCounterOverflow
			return written, c.werr
		}
	}
	return written, nil
}

var (
	_ net.Conn           = (*Conn)(nil)
	_ readyreader.Reader = (*Conn)(nil)
)
