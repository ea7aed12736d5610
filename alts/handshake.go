package alts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// ALPN is the application protocol that Client and Server negotiate. A peer
// that does not offer (or select) it is refused with [ErrALPN].
const ALPN = "readyconn-alts/1"

// ExporterLabel is the TLS keying-material exporter label from which the
// record key is derived. It begins with "EXPERIMENTAL" as RFC 5705 requires
// for labels that are not registered with IANA. The exporter context is the
// record protocol name, [AES128GCMRekey].
const ExporterLabel = "EXPERIMENTAL readyconn alts record key"

var (
	// ErrHandshake is wrapped by every error that Client, Server, Dial and
	// the handshakes run by a Listener return because the handshake
	// failed. The same error also wraps the cause (a *tls.AlertError, a
	// *tls.CertificateVerificationError, os.ErrDeadlineExceeded,
	// context.Canceled, io.EOF, ...), so errors.Is and errors.As see both.
	ErrHandshake = errors.New("alts: handshake failed")

	// ErrALPN means the TLS handshake succeeded but the peer did not
	// negotiate [ALPN]: it is a plain TLS endpoint, not an alts one. It is
	// returned wrapped together with ErrHandshake.
	ErrALPN = errors.New("alts: peer did not negotiate the " + ALPN + " protocol (plain TLS peer?)")
)

// Client runs the client side of the handshake on c and returns the
// encrypted connection. cfg is used as for [tls.Client]: it must set
// ServerName or InsecureSkipVerify, and may carry a client certificate for
// mutual TLS. Client does not modify cfg; it uses a clone with MinVersion
// TLS 1.3 and NextProtos [ALPN] (other NextProtos are ignored). opts
// configure the record layer as for [NewConn].
//
// Client honours c's deadline; use [ClientContext] to bound the handshake
// with a context instead. The returned *Conn owns c. On error Client closes
// c and the error wraps [ErrHandshake].
func Client(c net.Conn, cfg *tls.Config, opts ...Option) (*Conn, error) {
	return handshake(context.Background(), c, cfg, ClientSide, opts)
}

// Server runs the server side of the handshake on c and returns the
// encrypted connection. cfg is used as for [tls.Server] (Certificates or
// GetCertificate, and ClientAuth/ClientCAs for mutual TLS); Server uses a
// clone with MinVersion TLS 1.3, NextProtos [ALPN] and session tickets
// disabled, and applies the same to configs returned by GetConfigForClient.
//
// Server honours c's deadline; use [ServerContext] to bound the handshake
// with a context instead. The returned *Conn owns c. On error Server closes
// c and the error wraps [ErrHandshake].
func Server(c net.Conn, cfg *tls.Config, opts ...Option) (*Conn, error) {
	return handshake(context.Background(), c, cfg, ServerSide, opts)
}

// ClientContext is [Client] with the handshake bounded by ctx: if ctx has a
// deadline it becomes c's deadline for the handshake, and cancelling ctx
// interrupts the handshake (the error then wraps ctx.Err()). If ctx has a
// deadline, it replaces any deadline set on c and is cleared once the
// handshake has succeeded; otherwise c's deadline is left as it was.
func ClientContext(ctx context.Context, c net.Conn, cfg *tls.Config, opts ...Option) (*Conn, error) {
	return handshake(ctx, c, cfg, ClientSide, opts)
}

// ServerContext is [Server] with the handshake bounded by ctx, as for
// [ClientContext].
func ServerContext(ctx context.Context, c net.Conn, cfg *tls.Config, opts ...Option) (*Conn, error) {
	return handshake(ctx, c, cfg, ServerSide, opts)
}

// Dial connects to addr on the named network and runs [Client] on the
// connection. If cfg.ServerName is empty it is taken from addr, as
// [tls.Dial] does.
func Dial(network, addr string, cfg *tls.Config, opts ...Option) (*Conn, error) {
	return DialContext(context.Background(), network, addr, cfg, opts...)
}

// DialContext is [Dial] with the connection and the handshake bounded by
// ctx.
func DialContext(ctx context.Context, network, addr string, cfg *tls.Config, opts ...Option) (*Conn, error) {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return ClientContext(ctx, c, cfg, opts...)
}

// aLongTimeAgo is a deadline in the past, used to interrupt blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// handshake runs the handshake on a goroutine of its own and waits for it.
// crypto/tls's key exchange and certificate checks grow a goroutine's stack
// to 8–16 KiB; run on the caller's goroutine, that stack would stay with the
// connection's reader, which typically parks in Read for as long as the
// connection lives (the runtime halves a parked goroutine's stack at most
// once per GC cycle, and only while it uses under a quarter of it). A panic
// in the handshake (a tls.Config callback, say) is re-raised in the caller.
func handshake(ctx context.Context, c net.Conn, cfg *tls.Config, side Side, opts []Option) (*Conn, error) {
	type result struct {
		conn     *Conn
		err      error
		panicked any
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				c.Close()
				done <- result{panicked: p}
			}
		}()
		conn, err := runHandshake(ctx, c, cfg, side, opts)
		done <- result{conn: conn, err: err}
	}()
	r := <-done
	if r.panicked != nil {
		panic(r.panicked)
	}
	return r.conn, r.err
}

func runHandshake(ctx context.Context, c net.Conn, cfg *tls.Config, side Side, opts []Option) (conn *Conn, err error) {
	defer func() {
		if err != nil {
			c.Close()
			err = fmt.Errorf("%w: %w", ErrHandshake, err)
		}
	}()
	if cfg == nil {
		return nil, errors.New("nil *tls.Config")
	}
	if cfg.MaxVersion != 0 && cfg.MaxVersion < tls.VersionTLS13 {
		return nil, errors.New("tls.Config.MaxVersion is below TLS 1.3, which alts requires")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return nil, err
		}
	}
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
	}
	_, hasDeadline := ctx.Deadline()

	rc := &recordConn{Conn: c}
	var tc *tls.Conn
	if side == ClientSide {
		tc = tls.Client(rc, clientConfig(cfg))
	} else {
		tc = tls.Server(rc, serverConfig(cfg))
	}
	// Never Close tc: that would send a TLS close_notify on the socket
	// that now carries ALTS records. On error the deferred func closes c.
	err = tc.Handshake()
	if !stop() || (err != nil && ctx.Err() != nil) {
		// The context interrupted the handshake (or fired just after
		// it): report why.
		return nil, fmt.Errorf("%w (%w)", ctx.Err(), errOr(err, context.Cause(ctx)))
	}
	if err != nil && hasDeadline && errors.Is(err, os.ErrDeadlineExceeded) {
		// The socket deadline is ctx's deadline; its timer may not
		// have fired yet.
		return nil, fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	if err != nil {
		return nil, err
	}
	state := tc.ConnectionState()
	if state.Version != tls.VersionTLS13 {
		// Unreachable with MinVersion TLS 1.3; kept as a guard since the
		// exporter argument relies on it.
		return nil, fmt.Errorf("negotiated TLS version %#x, want TLS 1.3", state.Version)
	}
	if state.NegotiatedProtocol != ALPN {
		return nil, ErrALPN
	}
	if rc.remaining != 0 || rc.hdrOff != 0 {
		return nil, errors.New("TLS handshake ended inside a record")
	}
	key, err := state.ExportKeyingMaterial(ExporterLabel, []byte(AES128GCMRekey), keySizeRekey)
	if err != nil {
		return nil, err
	}
	if hasDeadline {
		if err := c.SetDeadline(time.Time{}); err != nil {
			return nil, err
		}
	}
	conn, err = newConnUnguarded(c, side, AES128GCMRekey, key, opts...)
	clear(key)
	if err != nil {
		return nil, err
	}
	conn.tlsState = &state
	return conn, nil
}

// keySizeRekey is the key length of AES128GCMRekey: a 32-byte KDF key and a
// 12-byte nonce mask.
const keySizeRekey = 44

func errOr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

func clientConfig(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	applyDefaults(cfg)
	return cfg
}

func serverConfig(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	applyDefaults(cfg)
	cfg.SessionTicketsDisabled = true
	if get := cfg.GetConfigForClient; get != nil {
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := get(hello)
			if err != nil || c == nil {
				return c, err
			}
			c = c.Clone()
			applyDefaults(c)
			c.SessionTicketsDisabled = true
			c.GetConfigForClient = nil
			return c, nil
		}
	}
	return cfg
}

func applyDefaults(cfg *tls.Config) {
	cfg.MinVersion = tls.VersionTLS13
	if cfg.MaxVersion != 0 && cfg.MaxVersion < tls.VersionTLS13 {
		cfg.MaxVersion = tls.VersionTLS13
	}
	cfg.NextProtos = []string{ALPN}
}

// TLS record framing, as read by recordConn.
const (
	recordHeaderLen = 5
	// maxRecordLen is the largest TLS 1.3 record body (2^14 + 256, RFC
	// 8446 section 5.2); crypto/tls refuses larger ones too, before reading
	// them.
	maxRecordLen = 16384 + 256
)

// recordConn is the socket as the tls.Conn sees it during the handshake: its
// Read never returns a byte beyond the end of the TLS record being read, so
// when the handshake ends no byte that follows the peer's last handshake
// record (the first ALTS frame) has been taken from the socket.
type recordConn struct {
	net.Conn
	hdr       [recordHeaderLen]byte
	hdrOff    int   // bytes of hdr read from the socket (0 between records)
	hdrOut    int   // bytes of hdr already returned to the tls.Conn
	remaining int   // body bytes of the current record still on the socket
	err       error // sticky, after an oversized record header
}

var errRecordTooLarge = errors.New("alts: TLS record longer than 2^14+256 bytes")

func (r *recordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.err != nil && r.hdrOut == recordHeaderLen {
		return 0, r.err
	}
	if r.hdrOff < recordHeaderLen {
		n, err := io.ReadFull(r.Conn, r.hdr[r.hdrOff:])
		r.hdrOff += n
		if r.hdrOff < recordHeaderLen {
			if err == io.EOF && r.hdrOff > 0 {
				err = io.ErrUnexpectedEOF
			}
			// Hand over what arrived so crypto/tls reports the
			// truncation or deadline itself.
			n := copy(p, r.hdr[r.hdrOut:r.hdrOff])
			r.hdrOut += n
			return n, err
		}
		r.remaining = int(r.hdr[3])<<8 | int(r.hdr[4])
		if r.remaining > maxRecordLen {
			// Let crypto/tls see the header and refuse the record
			// with the right alert; never read its body.
			r.remaining = 0
			r.err = errRecordTooLarge
		}
	}
	if r.hdrOut < recordHeaderLen {
		n := copy(p, r.hdr[r.hdrOut:])
		r.hdrOut += n
		if r.hdrOut == recordHeaderLen && r.remaining == 0 && r.err == nil {
			r.hdrOff, r.hdrOut = 0, 0
		}
		return n, nil
	}
	if len(p) > r.remaining {
		p = p[:r.remaining]
	}
	n, err := r.Conn.Read(p)
	r.remaining -= n
	if r.remaining == 0 {
		r.hdrOff, r.hdrOut = 0, 0
	}
	if err == io.EOF && r.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
