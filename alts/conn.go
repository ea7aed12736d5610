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
	"github.com/readyconn/readyconn/internal/record"
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

// writeChunk is the most ciphertext one Write puts in one buffer (and one
// write call); at least one frame always fits.
const writeChunk = 512 << 10

// closeFlushTimeout bounds how long Close tries to send the rest of a frame
// that a timed-out Write cut, as crypto/tls bounds its close_notify.
const closeFlushTimeout = 5 * time.Second

var (
	// ErrAuth means a frame failed authentication: it was tampered with,
	// replayed, reordered, reflected, or sealed under another key. It is
	// sticky: every later Read returns it.
	ErrAuth = errors.New("alts: message authentication failed")
	// ErrMalformed is wrapped by the errors for frames that cannot be
	// valid: a length below 20 or above MaxFrameSize, or a type whose low
	// byte is not 6. It is sticky.
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
	// ErrKeyReuse is wrapped by NewConn's error for a key it refuses
	// because it was used before: a key given to NewConn earlier in the
	// process for the same side and record protocol, or an all-zero key
	// (NewConn clears every key it takes). Two Conns of one side with one
	// key would seal different frames under the same AES-GCM nonces, which
	// reveals the XOR of their plaintexts and the authentication key.
	ErrKeyReuse = errors.New("alts: key used before: a key is for one connection only")

	errClosed    = fmt.Errorf("alts: use of closed connection: %w", net.ErrClosed)
	errTruncated = fmt.Errorf("alts: connection ended inside a frame: %w", io.ErrUnexpectedEOF)
)

func keySizeError(protocol string, got, want int) error {
	return fmt.Errorf("%w: %s needs a %d-byte key, got %d bytes", ErrKeySize, protocol, want, got)
}

func unknownProtocolError(protocol string) error {
	return fmt.Errorf("%w %q (want %q or %q)", ErrUnknownProtocol, protocol, AES128GCM, AES128GCMRekey)
}

// frameFormat is the framing of ALTS frames for the record reader.
var frameFormat = record.Format{HeaderLen: headerSize, Length: frameLength, Truncated: errTruncated}

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
// from. The default is bufferpool.Default(). Buffers that held decrypted
// bytes are cleared before they go back.
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
	conn    net.Conn
	pool    bufferpool.Pool
	side    Side
	rekey   bool // AES128GCMRekey
	payload int  // plaintext bytes in a full frame written by this side

	// tlsState is the TLS 1.3 handshake that established the keys, set by
	// Client and Server after NewConn; nil for a bare NewConn.
	tlsState *tls.ConnectionState

	closed atomic.Bool

	rmu  sync.Mutex
	in   recordCipher
	rd   record.Reader
	rerr error  // sticky read error
	res  result // of step

	wmu  sync.Mutex
	out  recordCipher
	pend record.Pending // the rest of a frame a timed-out Write cut
	werr error          // sticky write error (counter exhausted)
}

// NewConn returns a Conn that runs the record protocol (AES128GCM or
// AES128GCMRekey) with key over c, as the given side. The Conn takes
// ownership of c (Close closes it). The other end must use the same
// protocol and key and the other side.
//
// A key is for exactly one connection, ever: each end uses it once, for
// its side, and never again. Two Conns of one side with one key seal
// different frames under the same AES-GCM nonces, which reveals the XOR of
// their plaintexts and lets an observer forge frames. Keys come from a
// handshake that makes a fresh one per connection (Client and Server do;
// so does ALTS's handshaker service); never from configuration. To make
// misuse hard, NewConn
//
//   - clears key (overwrites the caller's slice with zeros) once the Conn
//     is made, so the slice cannot be used twice: keep a copy only to hand
//     to the other end;
//   - refuses an all-zero key, and a key that it was given before in this
//     process for the same side and protocol (it remembers the last 1024,
//     by keyed fingerprint), with an error wrapping ErrKeyReuse.
//
// Neither check can see reuse across processes: that is the caller's to
// prevent.
func NewConn(c net.Conn, side Side, protocol string, key []byte, opts ...Option) (*Conn, error) {
	cfg, err := parseOptions(side, opts)
	if err != nil {
		return nil, err
	}
	if err := checkKeySize(protocol, key); err != nil {
		return nil, err
	}
	if allZero(key) {
		return nil, fmt.Errorf("%w (an all-zero key: NewConn clears the keys it takes)", ErrKeyReuse)
	}
	if !usedKeys.claim(protocol, side, key) {
		return nil, fmt.Errorf("%w (this process gave NewConn the same key for the %v side before)", ErrKeyReuse, side)
	}
	ac, err := newConn(c, side, protocol, key, cfg)
	if err != nil {
		return nil, err
	}
	clear(key)
	return ac, nil
}

// newConnUnguarded is NewConn without the reuse checks and without
// clearing key, for keys fresh by construction (the handshake) and for
// tests that replay fixed keys.
func newConnUnguarded(c net.Conn, side Side, protocol string, key []byte, opts ...Option) (*Conn, error) {
	cfg, err := parseOptions(side, opts)
	if err != nil {
		return nil, err
	}
	return newConn(c, side, protocol, key, cfg)
}

func parseOptions(side Side, opts []Option) (connConfig, error) {
	cfg := connConfig{maxFrame: DefaultFrameSize}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxFrame < MinFrameSize || cfg.maxFrame > MaxFrameSize {
		return cfg, fmt.Errorf("alts: max frame size %d outside [%d, %d]", cfg.maxFrame, MinFrameSize, MaxFrameSize)
	}
	if side != ClientSide && side != ServerSide {
		return cfg, fmt.Errorf("alts: invalid side %d", int(side))
	}
	if cfg.pool == nil {
		cfg.pool = bufferpool.Default()
	}
	return cfg, nil
}

func checkKeySize(protocol string, key []byte) error {
	switch protocol {
	case AES128GCM:
		if len(key) != aes128KeySize {
			return keySizeError(protocol, len(key), aes128KeySize)
		}
	case AES128GCMRekey:
		if len(key) != rekeyKeySize {
			return keySizeError(protocol, len(key), rekeyKeySize)
		}
	default:
		return unknownProtocolError(protocol)
	}
	return nil
}

func newConn(c net.Conn, side Side, protocol string, key []byte, cfg connConfig) (*Conn, error) {
	ac := &Conn{
		conn:    c,
		pool:    cfg.pool,
		side:    side,
		rekey:   protocol == AES128GCMRekey,
		payload: cfg.maxFrame - frameOverhead,
	}
	// The directions share the key and have an AEAD each. Server-sent
	// frames carry the direction bit.
	keys, err := newKeyMaterial(protocol, key)
	if err != nil {
		return nil, err
	}
	if err := ac.out.initKeys(keys, side == ServerSide); err != nil {
		return nil, err
	}
	if err := ac.in.initKeys(keys, side == ClientSide); err != nil {
		return nil, err
	}
	ac.rd.Init(c, cfg.pool, &frameFormat)
	ac.rd.SetLeftover(cfg.leftover)
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
	if c.rekey {
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
// connection. A Read or Write that times out returns the underlying
// connection's timeout error (a net.Error whose Timeout is true, wrapping
// os.ErrDeadlineExceeded for the net package's connections).
//
// Timeouts break nothing: a timed-out Read loses nothing and may be
// retried; a Write that times out before any byte of a frame reached the
// connection undoes that frame, and a frame cut midway is completed before
// anything else on the next Write, so the Conn keeps working with a later
// deadline (a *tls.Conn breaks for good).
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the underlying connection.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the underlying connection.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// Close closes the underlying connection, which unblocks a Read or Write in
// progress, and returns the Conn's buffers to the pool. It does not wait for
// a Read or Write in progress (one that is gives its buffers back when it
// returns), so it returns even over a net.Conn whose Close does not
// interrupt its Read. If a timed-out Write left a frame cut midway and no
// Write is in progress, Close first tries for up to 5 seconds to send the
// rest of it, so that the peer sees the bytes that Write reported as
// committed. Later calls return an error wrapping net.ErrClosed.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return errClosed
	}
	if c.wmu.TryLock() {
		if !c.pend.Empty() {
			c.conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
			c.pend.Flush(c.conn, c.pool)
		}
		c.pend.Release(c.pool)
		c.wmu.Unlock()
	}
	err := c.conn.Close()
	c.releaseRead()
	return err
}

// releaseRead gives back what the read side holds, after Close, unless a
// Read is in progress (which does it when it returns).
func (c *Conn) releaseRead() {
	if c.rmu.TryLock() {
		c.rd.Release()
		c.rmu.Unlock()
	}
}

// releaseWrite gives back what the write side holds, after Close, unless a
// Write is in progress.
func (c *Conn) releaseWrite() {
	if c.wmu.TryLock() {
		c.pend.Release(c.pool)
		c.wmu.Unlock()
	}
}

// ---------------------------------------------------------------- reading

// Read reads decrypted bytes into p. It returns the plaintext of at most one
// frame per call. Bytes of a frame that do not fit in p are kept (in the
// Conn's read buffer) for the next Read; once everything received has been
// read, the Conn owns no buffer.
//
// Errors other than timeouts end the read side for good, as in
// crypto/tls: every later Read returns the same error.
//
// Read is the frame a reader parks in for as long as its connection is
// idle, so it is kept small: the work happens in step, which has returned
// before Fill waits, and the AEAD runs in openFrame, called from here (a
// goroutine whose stack grew past 2 KiB keeps the larger stack while
// parked).
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.res.p = p
	for {
		switch c.step() {
		case actFill:
			c.res.fillErr = c.rd.Fill()
		case actOpen:
			c.openFrame()
		default:
			return c.readDone()
		}
	}
}

// readDone ends a Read: it hands over what step left and unlocks.
//
//go:noinline
func (c *Conn) readDone() (int, error) {
	n, err := c.res.n, c.res.err
	c.res = result{}
	c.rmu.Unlock()
	if c.closed.Load() {
		c.releaseRead()
	}
	return n, err
}

// ReadOnReady implements readyreader.Reader: it waits, without holding a
// buffer, until plaintext is available, then takes a buffer from pool of no
// more than size bytes and no more than the plaintext it delivers, and
// fills it (decrypting straight into it when a whole frame fits in size).
// The caller owns the returned buffer (nil when n == 0) and must Put it
// back to pool. n > 0 bytes must be processed before err is considered. A
// size below 1 fails with readyreader.ErrInvalidSize.
func (c *Conn) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if size < 1 {
		return nil, 0, readyreader.ErrInvalidSize
	}
	c.rmu.Lock()
	c.res.size, c.res.pool = size, pool
	for {
		switch c.step() {
		case actFill:
			c.res.fillErr = c.rd.Fill()
		case actOpen:
			c.openFrame()
		default:
			return c.readOnReadyDone()
		}
	}
}

// readOnReadyDone ends a ReadOnReady: it hands over what step left and
// unlocks.
//
//go:noinline
func (c *Conn) readOnReadyDone() (*[]byte, int, error) {
	buf, n, err := c.res.buf, c.res.n, c.res.err
	c.res = result{}
	c.rmu.Unlock()
	if c.closed.Load() {
		c.releaseRead()
	}
	return buf, n, err
}

// What step asks Read and ReadOnReady to do next.
const (
	actDone = iota // return what step left in c.res
	actFill        // read more bytes (c.rd.Fill), then step again
	actOpen        // open the frame step prepared (openFrame), then step again
)

// result is what Read and ReadOnReady ask of step (p, or size and pool),
// what step leaves for them, and the frame being opened. Passing it in the
// Conn rather than as arguments keeps the frames a reader parks in small.
type result struct {
	p    []byte
	size int
	pool bufferpool.Pool // nil for Read
	buf  *[]byte
	n    int
	err  error

	fillErr error // of the last c.rd.Fill

	// The frame prepared by prepareOpen and opened by openFrame.
	ct     []byte  // ciphertext and tag
	dstBuf *[]byte // a buffer taken from pool to open into, or nil
	direct bool    // it opens into the caller's memory (p, or dstBuf)
	opened int     // plaintext bytes, or -1 when it failed authentication
}

// step goes as far as the bytes already read allow: it delivers buffered
// plaintext (into c.res.p, or for ReadOnReady into a buffer from c.res.pool),
// or prepares the next complete frame, and leaves the outcome in c.res. It
// returns actFill when it needs more bytes (the next step takes Fill's
// error) and actOpen when a frame is ready to be opened. c.rmu is held.
//
//go:noinline
func (c *Conn) step() int {
	r := &c.res
	if r.ct != nil && c.finishFrame() {
		return actDone
	}
	if err := r.fillErr; err != nil {
		r.fillErr = nil
		r.err = c.readErr(err)
		return actDone
	}
	if c.closed.Load() || c.rerr != nil {
		r.err = c.readFailed()
		return actDone
	}
	if len(c.rd.Plain()) > 0 {
		r.buf, r.n = c.deliver()
		return actDone
	}
	rec, err := c.rd.Next()
	if err != nil {
		r.err = c.fail(err)
		return actDone
	}
	if rec == nil {
		c.rd.ReleaseIfDrained() // shrink a large buffer holding a partial frame
		if c.rd.Unparsed() == 0 {
			c.in.release() // idle: see recordCipher
		}
		return actFill
	}
	if err := c.in.prepareNext(); err != nil {
		r.err = c.fail(err)
		return actDone
	}
	c.prepareOpen(rec)
	return actOpen
}

// prepareOpen chooses where the frame rec opens: into the caller's slice,
// or a buffer from the caller's pool, when its whole plaintext fits; in
// place otherwise (an empty frame too).
func (c *Conn) prepareOpen(rec []byte) {
	r := &c.res
	ct := rec[headerSize:]
	ptLen := len(ct) - tagSize
	room := len(r.p)
	if r.pool != nil {
		room = r.size
	}
	r.ct, r.direct, r.dstBuf = ct, ptLen > 0 && ptLen <= room, nil
	if !r.direct {
		c.rd.Opened()
	}
}

// openFrame authenticates and decrypts the prepared frame. It calls the
// AEAD from a small frame right under Read's, and takes the caller's pool
// buffer here too (a pool that has to allocate goes deep).
//
//go:noinline
func (c *Conn) openFrame() {
	r := &c.res
	dst := r.ct[:0] // in place
	if r.direct {
		if r.pool != nil {
			r.dstBuf = r.pool.Get(len(r.ct) - tagSize)
			dst = (*r.dstBuf)[:0]
		} else {
			dst = r.p[:0]
		}
	}
	out, err := c.in.box.Open(dst, c.in.nonce[:], r.ct, nil)
	r.opened = len(out)
	if err != nil {
		r.opened = -1
	}
}

// finishFrame acts on an opened frame. It returns true when the outcome
// (data delivered or an error) is in c.res; false when the frame was empty
// and reading goes on.
func (c *Conn) finishFrame() bool {
	r := &c.res
	ct, buf, direct, n := r.ct, r.dstBuf, r.direct, r.opened
	r.ct, r.dstBuf = nil, nil
	if n < 0 {
		if direct {
			// Never leave what a failed open wrote in the caller's
			// memory or pool.
			dst := r.p
			if buf != nil {
				dst = *buf
			}
			clear(dst[:len(ct)-tagSize])
			if buf != nil {
				r.pool.Put(buf)
			}
		}
		r.err = c.fail(ErrAuth)
		return true
	}
	c.in.ctr.inc()
	if direct {
		c.rd.ReleaseIfDrained()
		r.buf, r.n = buf, n
		return true
	}
	if n > 0 {
		c.rd.SetPlain(ct[:n])
		r.buf, r.n = c.deliver()
		return true
	}
	c.rd.ReleaseIfDrained()
	return false
}

// deliver hands out opened bytes buffered by the record reader: into c.res.p,
// or into a buffer of no more than c.res.size bytes (and no more than there
// is) from c.res.pool.
func (c *Conn) deliver() (*[]byte, int) {
	r := &c.res
	if r.pool == nil {
		return nil, c.rd.Deliver(r.p)
	}
	n := min(r.size, len(c.rd.Plain()))
	buf := r.pool.Get(n)
	return buf, c.rd.Deliver((*buf)[:n])
}

// readErr turns an error of Fill into Read's error. Timeouts lose nothing
// and may be retried, and so may a read that made no progress; every other
// error is sticky, as in crypto/tls (io.EOF at a frame boundary included).
//
//go:noinline
func (c *Conn) readErr(err error) error {
	if c.closed.Load() {
		c.rd.Release()
		if errors.Is(err, net.ErrClosed) {
			return err
		}
		return errClosed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.rd.ReleaseIfDrained()
		return err
	}
	if err == io.ErrNoProgress {
		return err
	}
	return c.fail(err)
}

// readFailed returns the error of a read after Close or after the read
// side failed, and gives back what the reader still holds.
//
//go:noinline
func (c *Conn) readFailed() error {
	c.rd.Release()
	if c.closed.Load() {
		return errClosed
	}
	return c.rerr
}

// fail makes err the sticky read error and drops everything buffered.
func (c *Conn) fail(err error) error {
	c.rerr = err
	c.rd.Release()
	c.in.release()
	return err
}

// ---------------------------------------------------------------- writing

// Write encrypts b into frames of at most the maximum frame size and writes
// them, several frames per write call.
//
// On error it returns how many bytes of b are committed: those whose frames
// reached the connection, including a frame cut midway, whose remaining
// bytes the next Write (or Close) sends before anything else. Frames of
// which no byte was written are undone (their counter values are used again,
// which is safe because their ciphertext was never seen, and it is cleared
// before its buffer goes back to the pool), so after a timeout the
// connection stays usable with a later deadline. Only an exhausted frame
// counter (ErrCounterOverflow) breaks the write side for good.
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	n, err := c.write(b)
	c.out.release() // idle until the next Write: see recordCipher
	c.wmu.Unlock()
	if c.closed.Load() {
		c.releaseWrite()
	}
	return n, err
}

// write is Write with c.wmu held.
func (c *Conn) write(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, errClosed
	}
	if c.werr != nil {
		return 0, c.werr
	}
	if err := c.pend.Flush(c.conn, c.pool); err != nil {
		return 0, err
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
			n, err := c.writeFrames(chunk, frames)
			written += n
			if err != nil {
				return written, err
			}
		}
		if overflow {
			c.werr = ErrCounterOverflow
			return written, c.werr
		}
	}
	return written, nil
}

// writeFrames seals chunk into frames and writes them in one call. It
// returns how many bytes of chunk are committed (see Write).
func (c *Conn) writeFrames(chunk []byte, frames int) (int, error) {
	full := c.payload + frameOverhead
	size := len(chunk) + frames*frameOverhead
	buf := c.pool.Get(size)
	w := (*buf)[:size]
	saved := c.out.ctr
	off := 0
	for pt := chunk; len(pt) > 0; {
		m := min(len(pt), c.payload)
		binary.LittleEndian.PutUint32(w[off:], uint32(typeFieldSize+m+tagSize))
		binary.LittleEndian.PutUint32(w[off+lenFieldSize:], recordMsgType)
		if _, err := c.out.seal(w[off+headerSize:off+headerSize], pt[:m]); err != nil {
			c.out.ctr = saved
			clear(w[:off])
			c.pool.Put(buf)
			c.werr = err
			return 0, err
		}
		off += headerSize + m + tagSize
		pt = pt[m:]
	}
	n, err := c.conn.Write(w)
	if n >= size {
		c.pool.Put(buf)
		return len(chunk), err
	}
	if err == nil {
		err = io.ErrShortWrite
	}
	// Frames of which no byte went out are undone: their counter values
	// will seal other plaintext, so their ciphertext must never be seen
	// (it is cleared). The rest of a frame cut midway goes out first on
	// the next Write.
	touched := (max(n, 0) + full - 1) / full
	c.out.ctr = saved
	for range touched {
		c.out.ctr.inc()
	}
	end := min(size, touched*full)
	clear(w[end:])
	c.pend.Keep(c.pool, buf, max(n, 0), end)
	return min(len(chunk), touched*c.payload), err
}

var (
	_ net.Conn           = (*Conn)(nil)
	_ readyreader.Reader = (*Conn)(nil)
)
