package alts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/readyconn/readyconn/internal/record"
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

// ClientContext is [Client] with the handshake bounded by ctx: crypto/tls
// runs it with [tls.Conn.HandshakeContext], so cancelling ctx (or its
// deadline passing) before the handshake completes interrupts it, closes c
// and makes the error wrap ctx.Err(); once the handshake has completed, ctx
// no longer matters. ctx reaches the tls.Config callbacks (for a server,
// [tls.ClientHelloInfo.Context] in GetConfigForClient and GetCertificate).
// c's own deadlines are left as they are.
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
		return nil, contextError(ctx, err)
	}
	// crypto/tls reads the socket through hc one TLS record at a time, so
	// that when the handshake ends no byte of the first ALTS frame, which
	// may follow the peer's Finished at once, has been taken.
	hc := record.NewHandshakeConn(c, false)
	var tc *tls.Conn
	if side == ClientSide {
		tc = tls.Client(hc, clientConfig(cfg))
	} else {
		tc = tls.Server(hc, serverConfig(cfg))
	}
	// Never Close tc: that would send a TLS close_notify on the socket
	// that now carries ALTS records. On error the deferred func closes c.
	// HandshakeContext closes c itself if ctx ends first, and then
	// returns ctx.Err().
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, contextError(ctx, err)
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
	if !hc.Between() {
		return nil, errors.New("TLS handshake ended inside a record")
	}
	key, err := state.ExportKeyingMaterial(ExporterLabel, []byte(AES128GCMRekey), rekeyKeySize)
	if err != nil {
		return nil, err
	}
	conn, err = newConnUnguarded(c, side, AES128GCMRekey, key, opts...)
	clear(key)
	if err != nil {
		return nil, err
	}
	conn.tlsState = &state
	return conn, nil
}

// contextError adds the cause of ctx to err when ctx ended the handshake
// and has a cause other than ctx.Err().
func contextError(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil || !errors.Is(err, cerr) {
		return err
	}
	if cause := context.Cause(ctx); cause != nil && cause != cerr {
		return fmt.Errorf("%w (%w)", err, cause)
	}
	return err
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
