package tlsconn

import (
	"context"
	"crypto/cipher"
	"crypto/tls"
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

// Option configures a Conn.
type Option func(*options)

type options struct {
	pool      bufferpool.Pool
	newChaCha func(key []byte) (cipher.AEAD, error)
}

// WithPool sets the pool the Conn takes its read and write buffers from.
// The default is bufferpool.Default(). Buffers that held decrypted bytes
// are cleared before they go back.
func WithPool(pool bufferpool.Pool) Option {
	return func(o *options) { o.pool = pool }
}

// WithChaCha20Poly1305 gives the Conn a ChaCha20-Poly1305 implementation,
// typically chacha20poly1305.New from golang.org/x/crypto. The standard
// library has none that callers can use, and this module depends on
// golang.org/x/sys alone; without one, a connection that negotiates a
// ChaCha20-Poly1305 suite (which crypto/tls picks for peers without AES
// hardware) keeps working through crypto/tls's record layer and reports
// Pinning.
func WithChaCha20Poly1305(newAEAD func(key []byte) (cipher.AEAD, error)) Option {
	return func(o *options) { o.newChaCha = newAEAD }
}

// Conn is a TLS connection whose handshake is run by crypto/tls and whose
// data is carried by this package's record layer, which holds no buffer
// while the connection is idle. It is a net.Conn and a readyreader.Reader.
//
// As with tls.Conn, one goroutine may read while another writes, and Close,
// the deadline setters and the address methods may be called at any time.
type Conn struct {
	conn   net.Conn
	config *tls.Config // the caller's (client) or the shared server base
	pool   bufferpool.Pool
	chacha func(key []byte) (cipher.AEAD, error)

	hsMu  sync.Mutex
	hsErr error
	tc    *tls.Conn // during the handshake; after it only while pinning or processing tickets
	hc    *hsConn   // the connection as tc sees it
	state *tls.ConnectionState

	// fatal is set by the side that sends or receives a fatal alert; the
	// other side fails with it too.
	fatal atomic.Pointer[net.OpError]

	rmu  sync.Mutex
	in   halfConn
	rd   record.Reader
	rerr error  // sticky read error
	res  result // of step
	msg  hsMessage

	wmu  sync.Mutex
	out  halfConn
	pend record.Pending

	hsDone     atomic.Bool
	closed     atomic.Bool
	keyUpdate  atomic.Bool // the peer asked for a KeyUpdate of ours
	peerClosed atomic.Bool // the peer's close_notify arrived
	isClient   bool
	pinning    bool
	shutdown   bool // close_notify sent; c.wmu
	// tickets: a TLS 1.3 client with a ClientSessionCache hands
	// NewSessionTickets to tc, so that it can resume (see ticketRecord);
	// c.rmu.
	tickets bool
	useless uint8 // consecutive records that carried no application data; c.rmu
}

func newConn(conn net.Conn, config *tls.Config, client bool, opts []Option) *Conn {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.pool == nil {
		o.pool = bufferpool.Default()
	}
	return &Conn{conn: conn, isClient: client, config: config, pool: o.pool, chacha: o.newChaCha}
}

// Client returns a new TLS client side connection using conn as the
// underlying transport, as [tls.Client] does. The config cannot be nil:
// users must set either ServerName or InsecureSkipVerify in the config. The
// handshake runs on the first Read, Write or ReadOnReady, or on Handshake.
// The config is not modified; the handshake uses a copy whose KeyLogWriter
// passes the traffic secrets to this Conn (and every line on to the
// config's own KeyLogWriter, if any).
func Client(conn net.Conn, config *tls.Config, opts ...Option) *Conn {
	if config == nil {
		config = &tls.Config{}
	}
	return newConn(conn, config, true, opts)
}

// Server returns a new TLS server side connection using conn as the
// underlying transport, as [tls.Server] does. The configuration config must
// be non-nil and must include at least one certificate or else set
// GetCertificate (or GetConfigForClient). The config is not modified. See
// the package documentation for how the handshake is configured.
func Server(conn net.Conn, config *tls.Config, opts ...Option) *Conn {
	return newConn(conn, serverBase(config), false, opts)
}

// ---------------------------------------------------------------- handshake

// Handshake runs the client or server handshake protocol if it has not yet
// been run. See [Conn.HandshakeContext].
func (c *Conn) Handshake() error {
	return c.HandshakeContext(context.Background())
}

// HandshakeContext runs the client or server handshake protocol if it has
// not yet been run, as [tls.Conn.HandshakeContext] does: crypto/tls runs it,
// with ctx (cancelling ctx before the handshake completes interrupts it and
// closes the connection; ClientHelloInfo.Context returns ctx). Most uses of
// this package need not call it explicitly: the first Read or Write does.
//
// The handshake runs on a goroutine of its own, so that the 8–16 KiB of
// stack it needs are not kept by the caller, which often goes on to park in
// Read for as long as the connection is idle. A panic in a tls.Config
// callback is re-raised in the caller.
//
// After a successful handshake the Conn hands the data over to its own
// record layer, or, where that is impossible, keeps crypto/tls carrying it
// (see [Conn.Pinning]). A failed handshake makes every later call return the
// same error.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if c.hsDone.Load() {
		return c.hsErr
	}
	return c.handshakeSlow(ctx)
}

//go:noinline
func (c *Conn) handshakeSlow(ctx context.Context) error {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsDone.Load() {
		return c.hsErr
	}
	if c.closed.Load() {
		return errClosed
	}
	var err error
	var panicked any
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { panicked = recover() }()
		err = c.runHandshake(ctx)
	}()
	<-done
	if panicked != nil {
		c.hsErr = fmt.Errorf("tlsconn: panic during handshake: %v", panicked)
		c.hsDone.Store(true)
		panic(panicked)
	}
	c.hsErr = err
	c.hsDone.Store(true)
	return err
}

// runHandshake runs crypto/tls's handshake through an hsConn and then hands
// the connection over to the record layer.
func (c *Conn) runHandshake(ctx context.Context) error {
	hc := &hsConn{HandshakeConn: record.NewHandshakeConn(c.conn, true)}
	c.hc = hc
	if c.isClient {
		cfg := c.config.Clone()
		hc.keys.user = cfg.KeyLogWriter
		cfg.KeyLogWriter = &hc.keys
		if cfg.ClientSessionCache != nil {
			cfg.ClientSessionCache = &sessionCache{ClientSessionCache: cfg.ClientSessionCache, keys: &hc.keys}
		}
		c.tc = tls.Client(hc, cfg)
	} else {
		c.tc = tls.Server(hc, c.config)
	}
	if err := c.tc.HandshakeContext(ctx); err != nil {
		c.tc, c.hc = nil, nil
		hc.keys.wipe()
		hc.StopCapture()
		return err
	}
	state := c.tc.ConnectionState()
	c.state = &state
	if err := c.handoff(&state, hc); err != nil {
		// crypto/tls goes on carrying the data: correct, just pinning.
		hc.keys.wipe()
		hc.Passthrough()
		c.pinning, hc.why = true, err
		return nil
	}
	hc.keys.wipe()
	if !c.tickets {
		c.tc, c.hc = nil, nil
	}
	c.config = nil // a per-connection config (gRPC clones one per handshake) is not kept
	return nil
}

// Pinning reports, after the handshake, whether crypto/tls's own record
// layer carries the data, which keeps a buffer while the connection is idle.
// That happens only when the handoff to this package's record layer was
// impossible: a cipher suite it does not carry (CBC suites; ChaCha20-Poly1305
// without [WithChaCha20Poly1305]), an AEAD the runtime refuses (AES-GCM with
// caller-chosen nonces under GODEBUG=fips140=only), a client config that
// allows renegotiation, or a handshake whose records could not be accounted
// for. The connection is correct either way. Before the handshake completes
// it reports false.
func (c *Conn) Pinning() bool {
	return c.hsDone.Load() && c.hsErr == nil && c.pinning
}

// PinningReason returns why Pinning reports true, or nil.
func (c *Conn) PinningReason() error {
	if !c.Pinning() {
		return nil
	}
	return c.hc.why
}

// ConnectionState returns basic TLS details about the connection, as
// [tls.Conn.ConnectionState] does; its ExportKeyingMaterial works. While a
// handshake runs it waits for it.
func (c *Conn) ConnectionState() tls.ConnectionState {
	if c.hsDone.Load() && c.state != nil {
		return *c.state
	}
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.state != nil {
		return *c.state
	}
	if c.tc != nil {
		return c.tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// NetConn returns the underlying connection that is wrapped by c. Note that
// writing to or reading from this connection directly will corrupt the TLS
// session.
func (c *Conn) NetConn() net.Conn { return c.conn }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines associated with the
// connection. A zero value for t means Read and Write will not time out.
//
// Unlike with crypto/tls, a Write that times out does not break the
// connection: if no byte of a record reached the connection, the record is
// undone, and a record cut midway is completed before anything else on the
// next Write. A Read that times out loses nothing.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the read deadline on the underlying connection.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline on the underlying connection.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// ---------------------------------------------------------------- reading

// Read reads data from the connection, running the handshake first if
// needed. It returns the data of at most one record per call; what does not
// fit in b stays buffered for the next Read, and once everything received
// has been read the Conn owns no buffer.
//
// Read is the frame a reader parks in for as long as its connection is
// idle, so it is kept small: the work happens in step, which has returned
// before Fill waits (a goroutine whose stack grew past 2 KiB keeps the
// larger stack while parked).
func (c *Conn) Read(b []byte) (int, error) {
	if !c.hsDone.Load() || c.hsErr != nil || c.pinning {
		return c.readSlow(b)
	}
	if len(b) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.res.p = b
	for {
		switch c.step() {
		case actFill:
			c.res.err, c.res.filled = c.rd.Fill(), true
		case actOpen:
			c.openRecord()
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
	return n, err
}

// readSlow is Read before and without the record layer: it runs the
// handshake, and reads through crypto/tls when it carries the data.
//
//go:noinline
func (c *Conn) readSlow(b []byte) (int, error) {
	if err := c.HandshakeContext(context.Background()); err != nil {
		return 0, err
	}
	if c.pinning {
		return c.tc.Read(b)
	}
	return c.Read(b)
}

// ReadOnReady implements readyreader.Reader: it waits, without holding a
// buffer, until data is available, then takes a buffer of at most size bytes
// from pool (no more than the record needs) and reads into it, decrypting
// straight into it when the whole record fits. The caller owns the returned
// buffer (nil when n == 0) and must Put it back to pool; n > 0 bytes are
// processed before err is considered.
//
// When crypto/tls carries the data (see Pinning), ReadOnReady takes a buffer
// of size bytes before it waits, as readyreader's blocking fallback does.
func (c *Conn) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if size < 1 || !c.hsDone.Load() || c.hsErr != nil || c.pinning {
		return c.readOnReadySlow(size, pool)
	}
	c.rmu.Lock()
	c.res.size, c.res.pool = size, pool
	for {
		switch c.step() {
		case actFill:
			c.res.err, c.res.filled = c.rd.Fill(), true
		case actOpen:
			c.openRecord()
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
	return buf, n, err
}

//go:noinline
func (c *Conn) readOnReadySlow(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if size < 1 {
		return nil, 0, readyreader.ErrInvalidSize
	}
	if err := c.HandshakeContext(context.Background()); err != nil {
		return nil, 0, err
	}
	if c.pinning {
		return readyreader.New(c.tc).ReadOnReady(size, pool)
	}
	return c.ReadOnReady(size, pool)
}

// What step asks Read and ReadOnReady to do next.
const (
	actDone = iota // return what step left in c.res
	actFill        // read more bytes (c.rd.Fill), then step again
	actOpen        // open the record step prepared (openRecord), then step again
)

// step goes as far as the bytes already read allow: it delivers buffered
// data (into c.res.p, or for ReadOnReady, into a buffer of at most
// c.res.size bytes from c.res.pool), or processes complete records until one
// delivers data or fails, and leaves the outcome in c.res. When it needs
// more bytes it returns actFill (the next step takes Fill's error); when a
// record is ready to be opened it returns actOpen. Filling and opening run
// from Read's own frame, so that neither the wait for readability nor
// AES-GCM's stack-hungry Open sits on top of step and its callees. c.rmu is
// held.
//
//go:noinline
func (c *Conn) step() int {
	r := &c.res
	if r.rec != nil {
		if r.finishRecord(c) {
			return actDone
		}
	}
	if r.filled {
		r.filled = false
		if err := r.err; err != nil {
			r.err = c.readErr(err)
			return actDone
		}
	}
	for {
		if c.rerr != nil || c.closed.Load() {
			r.err = c.readFailed()
			return actDone
		}
		if len(c.rd.Plain()) > 0 {
			r.buf, r.n, r.err = c.deliver(r.p, r.size, r.pool)
			return actDone
		}
		rec, err := c.rd.Next()
		if err != nil {
			r.err = c.failRead(err)
			return actDone
		}
		if rec == nil {
			if c.rd.Unparsed() == 0 {
				c.in.release() // idle: see halfConn
			}
			return actFill
		}
		if c.prepareRecord(rec) {
			return actOpen
		}
		if r.n > 0 || r.err != nil {
			return actDone
		}
	}
}

// result is what Read and ReadOnReady ask of step (p, or size and pool),
// what step leaves for them, and the record being opened. Passing it in the
// Conn rather than as arguments keeps the frames a reader parks in small.
type result struct {
	p    []byte
	size int
	pool bufferpool.Pool
	buf  *[]byte
	n    int
	// err is the outcome for Read and ReadOnReady, or, right after they
	// ran c.rd.Fill, Fill's error for step to take.
	err error

	// The record prepared by prepareRecord and opened by openRecord: it
	// opens into the caller's memory (p, or dstBuf taken from pool) when
	// direct, in place otherwise.
	rec    []byte
	dstBuf *[]byte
	opened int // bytes opened; -1 if authentication failed
	direct bool
	filled bool // err is Fill's
}

// dst returns where the prepared record opens.
func (r *result) dst(c *Conn) []byte {
	switch {
	case !r.direct:
		return r.rec[c.in.payloadOffset():][:0]
	case r.dstBuf != nil:
		return (*r.dstBuf)[:0]
	}
	return r.p[:0]
}

// deliver hands out opened bytes buffered by the record reader.
func (c *Conn) deliver(p []byte, size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if pool == nil {
		return nil, c.rd.Deliver(p), nil
	}
	buf := pool.Get(min(size, len(c.rd.Plain())))
	return buf, c.rd.Deliver(*buf), nil
}

// readFailed returns the error of a read after the read side failed or the
// Conn was closed, and gives back what the reader still holds.
//
//go:noinline
func (c *Conn) readFailed() error {
	c.rd.Release()
	if c.rerr != nil {
		return c.rerr
	}
	return errClosed
}

// readErr turns an error of Fill into Read's error. Timeouts lose nothing
// and may be retried; every other error is sticky, as in crypto/tls.
//
//go:noinline
func (c *Conn) readErr(err error) error {
	if c.closed.Load() {
		c.rd.Release()
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.rd.ReleaseIfDrained()
		return err
	}
	if errors.Is(err, io.ErrNoProgress) {
		return err
	}
	if err == io.EOF {
		// RFC 8446 section 6.1 suggests that EOF without a close_notify
		// is an error, but crypto/tls returns io.EOF, and so does this.
		c.rerr = io.EOF
		c.rd.Release()
		return err
	}
	c.rerr = err
	c.rd.Release()
	return err
}

// prepareRecord checks a complete record and chooses where it opens: into
// the caller's slice or a buffer from the caller's pool when the whole
// record fits, in place otherwise. It returns true when openRecord should
// open it; otherwise it has handled the record (an error, or a ticket for
// crypto/tls) and left the outcome in c.res.
func (c *Conn) prepareRecord(rec []byte) bool {
	r := &c.res
	if err := c.checkRecord(rec); err != nil {
		r.err = c.failRead(err)
		return false
	}
	if c.tickets && c.ticketRecord(rec) {
		return false
	}
	inner := c.in.innerLen(rec)
	room := len(r.p)
	if r.pool != nil {
		room = r.size
	}
	r.rec, r.direct, r.dstBuf = rec, inner > 0 && inner <= room, nil
	if !r.direct {
		c.rd.Opened()
	}
	// For ReadOnReady, openRecord takes the buffer (from a shallower
	// frame: a pool that has to allocate goes deep).
	return true
}

// openRecord authenticates and decrypts the prepared record. It calls the
// AEAD from a small frame right under Read's.
//
//go:noinline
func (c *Conn) openRecord() {
	r := &c.res
	if c.in.box == nil && !c.acquireIn() {
		r.opened = -2 // finishRecord reports the error
		return
	}
	if r.direct && r.pool != nil {
		r.dstBuf = r.pool.Get(c.in.innerLen(r.rec))
	}
	payload, aad := c.in.prepareOpen(r.rec, c.in.seq)
	opened, err := c.in.box.Open(r.dst(c), c.in.nonce[:], payload, aad)
	r.opened = len(opened)
	if err != nil {
		r.opened = -1
	}
}

// acquireIn takes the read direction's AEAD back (see halfConn), from a
// frame right under Read's: taking back a weakly held object sweeps its
// span if a collection has not yet, which runs on this stack. A rebuild
// runs on a goroutine of its own. It reports whether the AEAD is there;
// if not, the error is in c.res.err.
//
//go:noinline
func (c *Conn) acquireIn() bool {
	if c.in.acquired() {
		return true
	}
	if err := record.OnFreshStack((*acquireIn)(c)); err != nil {
		c.res.err = err
		return false
	}
	return true
}

// finishRecord acts on an opened record. It returns true when the outcome
// (data delivered or an error) is in r; false when the record carried no
// data and reading goes on.
func (r *result) finishRecord(c *Conn) bool {
	if r.opened == -2 { // no AEAD (acquireIn failed); no buffer was taken
		err := r.err
		r.rec, r.opened = nil, 0
		r.err = c.failRead(err)
		return true
	}
	rec, dst, buf, direct := r.rec, r.dst(c), r.dstBuf, r.direct
	opened := dst[:max(r.opened, 0)]
	ok := r.opened >= 0
	r.rec, r.dstBuf, r.opened = nil, nil, 0
	inner := c.in.innerLen(rec)
	if !ok {
		if direct {
			c.discard(buf, r.pool, dst[:inner])
		}
		r.err = c.failRead(alertErr(alertBadRecordMAC, "tlsconn: record failed authentication"))
		return true
	}
	c.in.seq++
	content, typ := c.in.content(opened, rec)
	if typ == typeApplicationData && len(content) > 0 && c.msg.idle() && len(content) <= maxPlaintext {
		c.useless = 0
		if direct {
			c.rd.ReleaseIfDrained()
			r.buf, r.n = buf, len(content)
			return true
		}
		c.rd.SetPlain(content)
		r.buf, r.n, r.err = c.deliver(r.p, r.size, r.pool)
		return true
	}
	err := c.control(typ, content)
	if direct {
		c.discard(buf, r.pool, dst[:inner])
	} else {
		c.rd.ReleaseIfDrained()
	}
	if err != nil {
		r.err = c.failRead(err)
		return true
	}
	return false
}

// discard clears bytes opened into the caller's memory that are not
// delivered, and puts a buffer taken for them back.
func (c *Conn) discard(buf *[]byte, pool bufferpool.Pool, opened []byte) {
	clear(opened)
	if buf != nil {
		pool.Put(buf)
	}
}

// checkRecord checks what can be checked of a record before opening it.
func (c *Conn) checkRecord(rec []byte) error {
	if c.in.seq == ^uint64(0) {
		return errSeqOverflow
	}
	switch typ := rec[0]; {
	case typ == typeChangeCipherSpec:
		// RFC 8446 section 5: after the handshake a change_cipher_spec
		// record is an unexpected_message (crypto/tls drops it).
		return alertErr(alertUnexpectedMessage, "tlsconn: change_cipher_spec record after the handshake")
	case c.in.suite.tls13 && typ != typeApplicationData:
		return alertErr(alertUnexpectedMessage, fmt.Sprintf("tlsconn: unprotected record of type %d after the handshake", typ))
	}
	n := c.in.innerLen(rec)
	if n < 0 || c.in.suite.tls13 && n < 1 {
		return alertErr(alertBadRecordMAC, "tlsconn: record too short to be protected")
	}
	return nil
}

// control acts on a record that is not application data with content: an
// empty application data record, an alert, a post-handshake handshake
// message, or anything else (an error).
func (c *Conn) control(typ byte, content []byte) error {
	if len(content) > maxPlaintext {
		return alertErr(alertRecordOverflow, "tlsconn: record plaintext longer than 2^14 bytes")
	}
	if typ != typeHandshake && !c.msg.idle() {
		// RFC 8446 section 5.1: handshake messages must not be
		// interleaved with other record types.
		return alertErr(alertUnexpectedMessage, "tlsconn: record interleaved with a fragmented handshake message")
	}
	switch typ {
	case typeApplicationData:
		return c.uselessRecord() // empty
	case typeAlert:
		return c.alert(content)
	case typeHandshake:
		if len(content) == 0 {
			return alertErr(alertUnexpectedMessage, "tlsconn: empty handshake record")
		}
		return c.handshakeMessages(content)
	}
	return alertErr(alertUnexpectedMessage, fmt.Sprintf("tlsconn: record of content type %d", typ))
}

// maxUselessRecords is how many records in a row may carry no application
// data, as in crypto/tls.
const maxUselessRecords = 16

func (c *Conn) uselessRecord() error {
	c.useless++
	if c.useless > maxUselessRecords {
		return alertErr(alertUnexpectedMessage, "tlsconn: too many records without application data")
	}
	return nil
}

// alert acts on an alert record.
func (c *Conn) alert(b []byte) error {
	if len(b) != 2 {
		return alertErr(alertUnexpectedMessage, "tlsconn: alert record of the wrong length")
	}
	level, desc := b[0], b[1]
	if desc == alertCloseNotify {
		c.peerClosed.Store(true)
		return io.EOF
	}
	if c.in.suite.tls13 {
		// TLS 1.3 has no warning alerts but user_canceled (RFC 8446
		// section 6.1), which crypto/tls and others drop.
		if desc == alertUserCanceled {
			return c.uselessRecord()
		}
		return &net.OpError{Op: "remote error", Err: tls.AlertError(desc)}
	}
	switch level {
	case alertLevelWarning:
		return c.uselessRecord()
	case alertLevelError:
		return &net.OpError{Op: "remote error", Err: tls.AlertError(desc)}
	}
	return alertErr(alertUnexpectedMessage, "tlsconn: alert of unknown level")
}

// failRead makes err the sticky read error, sends the alert it carries, if
// any, and drops everything buffered. io.EOF (close_notify) ends the read
// side without an alert.
func (c *Conn) failRead(err error) error {
	c.rerr = err
	c.rd.Release()
	var oe *net.OpError
	if errors.As(err, &oe) && (oe.Op == "remote error" || oe.Op == "local error") {
		c.fatal.CompareAndSwap(nil, oe)
	}
	if desc, ok := alertOf(err); ok {
		c.sendAlert(desc)
	}
	return err
}

// ---------------------------------------------------------------- writing

// writeChunk is the most ciphertext one write call carries.
const writeChunk = 256 << 10

// Write writes data to the connection, running the handshake first if
// needed. It seals b into records of up to 16 KiB and writes several records
// per write call.
//
// On error it returns how many bytes of b are committed: those whose
// records reached the connection, including a record cut midway, whose
// remaining bytes the next Write (or Close) sends before anything else.
// Records of which no byte was written are undone, so after a timeout the
// connection stays usable with a later deadline (crypto/tls breaks it for
// good).
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.HandshakeContext(context.Background()); err != nil {
		return 0, err
	}
	if c.pinning {
		return c.tc.Write(b)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	defer c.writeDone()
	if err := c.writable(); err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, nil
	}
	return c.writeRecords(typeApplicationData, b)
}

// writeDone ends a Write: the write direction is idle until the next one
// (see halfConn), and a Close that could not wait for this Write leaves the
// rest of a cut record to it to give back. c.wmu is held.
func (c *Conn) writeDone() {
	c.out.release()
	if c.closed.Load() {
		c.pend.Release(c.pool)
	}
}

// writable prepares a write: it fails on a closed, shut down or failed
// Conn, completes a record a timed-out write cut, and sends a KeyUpdate when
// one is due. c.wmu is held.
func (c *Conn) writable() error {
	if c.closed.Load() {
		return errClosed
	}
	if oe := c.fatal.Load(); oe != nil {
		return oe
	}
	if c.shutdown {
		return errShutdown
	}
	if err := c.pend.Flush(c.conn, c.pool); err != nil {
		return err
	}
	if c.out.suite.tls13 && (c.keyUpdate.Load() || c.out.seq >= rekeyAfter) {
		return c.sendKeyUpdate()
	}
	return nil
}

// rekeyAfter is how many records a TLS 1.3 write key seals before the Conn
// replaces it with a KeyUpdate: far below the limit RFC 8446 section 5.5
// sets for AES-GCM (2^24.5 full-size records). A variable for tests.
var rekeyAfter uint64 = 1 << 22

// sendKeyUpdate sends a KeyUpdate (update_not_requested) and switches the
// write key. Whoever asked for one gets it before any further application
// data, as RFC 8446 section 4.6.3 requires.
func (c *Conn) sendKeyUpdate() error { return c.sendKeyUpdateMsg(0) }

// sendKeyUpdateMsg sends a KeyUpdate with request_update set to req (1 asks
// the peer to update its key too) and switches the write key. c.wmu is held.
func (c *Conn) sendKeyUpdateMsg(req byte) error {
	msg := [5]byte{handshakeKeyUpdate, 0, 0, 1, req}
	n, err := c.writeRecords(typeHandshake, msg[:])
	if n == 0 {
		return err // nothing was sent: the KeyUpdate stays due
	}
	c.keyUpdate.Store(false)
	if uerr := record.OnFreshStack((*updateOut)(c)); uerr != nil {
		c.fatal.CompareAndSwap(nil, &net.OpError{Op: "local error", Err: uerr})
		return uerr
	}
	return err
}

// writeRecords seals b into records of content type typ and writes them.
// c.wmu is held. It returns how many bytes of b are committed (see Write).
func (c *Conn) writeRecords(typ byte, b []byte) (int, error) {
	if !c.out.acquired() {
		if err := record.OnFreshStack((*acquireOut)(c)); err != nil {
			c.fatal.CompareAndSwap(nil, &net.OpError{Op: "local error", Err: err})
			return 0, err
		}
	}
	over := c.out.overhead()
	full := maxPlaintext + over
	perChunk := max(1, writeChunk/full) * maxPlaintext
	written := 0
	for written < len(b) {
		chunk := b[written:min(len(b), written+perChunk)]
		records := (len(chunk) + maxPlaintext - 1) / maxPlaintext
		if c.out.suite.tls13 && typ == typeApplicationData {
			// Keep every record of a chunk under one key, and answer a
			// KeyUpdate that arrived during a long Write before the next
			// chunk (RFC 8446 section 4.6.3).
			if c.out.seq >= rekeyAfter || c.keyUpdate.Load() {
				if err := c.sendKeyUpdate(); err != nil {
					return written, err
				}
			}
			if left := rekeyAfter - c.out.seq; uint64(records) > left {
				records = int(left)
				chunk = chunk[:records*maxPlaintext]
			}
		}
		size := len(chunk) + records*over
		buf := c.pool.Get(size)
		w := *buf
		seq0 := c.out.seq
		off := 0
		for pt := chunk; len(pt) > 0; {
			m := min(len(pt), maxPlaintext)
			k, err := c.out.seal(w[off:], typ, pt[:m])
			if err != nil {
				c.out.seq = seq0
				c.pool.Put(buf)
				c.fatal.CompareAndSwap(nil, &net.OpError{Op: "local error", Err: err})
				return written, err
			}
			off += k
			pt = pt[m:]
		}
		n, err := c.conn.Write(w[:size])
		if err != nil || n < size {
			if err == nil {
				err = io.ErrShortWrite
			}
			// Records of which no byte went out are undone; the rest of
			// a record cut midway goes out first on the next Write.
			touched := 0
			if n > 0 {
				touched = (n + full - 1) / full
			}
			c.out.seq = seq0 + uint64(touched)
			// The undone records' ciphertext never left, and their
			// sequence numbers will seal other plaintext: nobody who
			// draws the buffer from the pool may see it.
			end := min(size, touched*full)
			clear(w[end:size])
			c.pend.Keep(c.pool, buf, n, end)
			return written + min(len(chunk), touched*maxPlaintext), err
		}
		c.pool.Put(buf)
		written += len(chunk)
	}
	return written, nil
}

// sendAlert sends a fatal alert if no Write is in progress (a Write that
// is sees the failure when it returns), without waiting for one.
func (c *Conn) sendAlert(desc uint8) {
	if c.pinning || !c.wmu.TryLock() {
		return
	}
	defer c.wmu.Unlock()
	if c.shutdown || !c.pend.Empty() || c.closed.Load() {
		return
	}
	c.writeAlertLocked(alertLevelError, desc)
}

// writeAlertLocked writes an alert record. c.wmu is held.
func (c *Conn) writeAlertLocked(level, desc uint8) error {
	b := [2]byte{level, desc}
	_, err := c.writeRecords(typeAlert, b[:])
	return err
}

// CloseWrite shuts down the writing side of the connection: it sends a
// close_notify alert, as [tls.Conn.CloseWrite] does. It should only be
// called once the handshake has completed and does not call CloseWrite on
// the underlying connection. Later Writes fail.
func (c *Conn) CloseWrite() error {
	if !c.hsDone.Load() || c.hsErr != nil {
		return errEarlyCloseWrite
	}
	if c.pinning {
		return c.tc.CloseWrite()
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.closeNotify()
}

// closeNotify sends close_notify once, completing a record cut by a timed-out
// write first, within 5 seconds, as crypto/tls does. c.wmu is held.
func (c *Conn) closeNotify() error {
	if c.shutdown {
		return nil
	}
	if oe := c.fatal.Load(); oe != nil {
		return oe
	}
	c.shutdown = true
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err := c.pend.Flush(c.conn, c.pool)
	if err == nil {
		err = c.writeAlertLocked(alertLevelWarning, alertCloseNotify)
	}
	c.conn.SetWriteDeadline(time.Now())
	return err
}

// Close closes the connection. After a completed handshake it first sends a
// close_notify alert, unless a Write is in progress, in which case Close
// only interrupts it, as [tls.Conn.Close] does. It does not wait for a Read
// in progress: closing the underlying connection unblocks it. Buffers go
// back to the pool (a Read in progress gives back its own when it returns).
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return errClosed
	}
	var alertErr error
	if c.hsDone.Load() && c.hsErr == nil {
		if c.pinning {
			return c.tc.Close()
		}
		if c.wmu.TryLock() {
			// Once the peer's close_notify has arrived, the peer may
			// close without waiting for ours (RFC 8446 section 6.1).
			if err := c.closeNotify(); err != nil && !c.peerClosed.Load() {
				alertErr = fmt.Errorf("tlsconn: failed to send closeNotify alert (but connection was closed anyway): %w", err)
			}
			c.pend.Release(c.pool)
			c.wmu.Unlock()
		}
	}
	err := c.conn.Close()
	if c.rmu.TryLock() {
		c.rd.Release()
		c.rmu.Unlock()
	}
	if err != nil {
		return err
	}
	return alertErr
}

var (
	_ net.Conn           = (*Conn)(nil)
	_ readyreader.Reader = (*Conn)(nil)
)

// The cipher work a Conn runs through record.OnFreshStack: rebuilding a
// direction's AEAD after a collection freed it, and replacing it on a
// KeyUpdate. A *Conn converted to these types is a record.Job without an
// allocation.
type (
	acquireIn  Conn
	acquireOut Conn
	updateIn   Conn
	updateOut  Conn
)

func (c *acquireIn) Run() error  { return c.in.acquire(c.chacha) }
func (c *acquireOut) Run() error { return c.out.acquire(c.chacha) }
func (c *updateIn) Run() error   { return c.in.update(c.chacha) }
func (c *updateOut) Run() error  { return c.out.update(c.chacha) }
