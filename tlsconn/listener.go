package tlsconn

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"time"
)

// listener is the net.Listener of Listen and NewListener.
type listener struct {
	net.Listener
	config *tls.Config // the server base
	opts   []Option

	done      chan struct{}
	closeOnce sync.Once
}

// Listen creates a TLS listener accepting connections on the given network
// address using net.Listen, as [tls.Listen] does. The configuration config
// must be non-nil and must include at least one certificate or else set
// GetCertificate.
func Listen(network, laddr string, config *tls.Config) (net.Listener, error) {
	if config == nil || len(config.Certificates) == 0 &&
		config.GetCertificate == nil && config.GetConfigForClient == nil {
		return nil, errors.New("tls: neither Certificates, GetCertificate, nor GetConfigForClient set in Config")
	}
	l, err := net.Listen(network, laddr)
	if err != nil {
		return nil, err
	}
	return NewListener(l, config), nil
}

// NewListener creates a Listener which accepts connections from an inner
// Listener and wraps each connection with [Server], as [tls.NewListener]
// does. Accept returns a *Conn whose handshake runs on its first Read,
// Write or Handshake. The configuration config must be non-nil and must
// include at least one certificate or else set GetCertificate.
//
// Unlike tls.NewListener's, Accept does not return the inner listener's
// transient errors: running out of file descriptors (EMFILE, ENFILE) or a
// connection aborted before it was accepted is what happens to the busy
// servers this package is for, and the inner listener works again a moment
// later. Accept backs off (5 ms, doubling, at most 1 s) and retries on every
// error but a closed listener, as net/http and grpc.Server do for temporary
// errors.
func NewListener(inner net.Listener, config *tls.Config) net.Listener {
	return newListener(inner, config, nil)
}

func newListener(inner net.Listener, config *tls.Config, opts []Option) *listener {
	return &listener{Listener: inner, config: serverBase(config), opts: opts, done: make(chan struct{})}
}

// maxAcceptBackoff caps the pause between failed Accepts.
const maxAcceptBackoff = time.Second

// Accept waits for and returns the next connection, a *Conn.
func (l *listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return newConn(c, l.config, false, l.opts), nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		if l.isClosed() {
			return nil, l.closedErr()
		}
		backoff = min(max(2*backoff, 5*time.Millisecond), maxAcceptBackoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, l.closedErr()
		}
	}
}

func (l *listener) closedErr() error {
	return &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
}

func (l *listener) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Close closes the inner listener; an Accept waiting between retries
// returns at once.
func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Dial connects to the given network address using net.Dial and then runs
// the TLS client handshake, as [tls.Dial] does. If config.ServerName is
// empty, the host of addr is used (config is not modified).
func Dial(network, addr string, config *tls.Config) (*Conn, error) {
	return DialWithDialer(new(net.Dialer), network, addr, config)
}

// DialWithDialer connects to the given network address using dialer.Dial
// and then runs the TLS client handshake, as [tls.DialWithDialer] does: any
// timeout or deadline given in the dialer applies to connection and
// handshake as a whole.
func DialWithDialer(dialer *net.Dialer, network, addr string, config *tls.Config) (*Conn, error) {
	return dial(context.Background(), dialer, network, addr, config, nil)
}

// Dialer dials TLS connections given a configuration and a Dialer for the
// underlying connection, as [tls.Dialer] does.
type Dialer struct {
	// NetDialer is the optional dialer to use for the TLS connections'
	// underlying TCP connections. A nil NetDialer is equivalent to the
	// net.Dialer zero value.
	NetDialer *net.Dialer
	// Config is the TLS configuration to use for new connections. A nil
	// configuration is equivalent to the zero configuration.
	Config *tls.Config
	// Options configure every Conn, as for Client.
	Options []Option
}

// Dial connects to the given network address and initiates a TLS
// handshake, returning the resulting TLS connection.
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// DialContext connects to the given network address and initiates a TLS
// handshake, returning the resulting *Conn. The ctx must be non-nil; if it
// expires before the connection is complete, an error is returned. Once
// connected, ctx has no effect on the connection.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := d.NetDialer
	if nd == nil {
		nd = new(net.Dialer)
	}
	c, err := dial(ctx, nd, network, addr, d.Config, d.Options)
	if err != nil {
		return nil, err // not a typed nil
	}
	return c, nil
}

func dial(ctx context.Context, netDialer *net.Dialer, network, addr string, config *tls.Config, opts []Option) (*Conn, error) {
	if netDialer.Timeout != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, netDialer.Timeout)
		defer cancel()
	}
	if !netDialer.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, netDialer.Deadline)
		defer cancel()
	}
	rawConn, err := netDialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if config == nil {
		config = &tls.Config{}
	}
	if config.ServerName == "" {
		colonPos := strings.LastIndex(addr, ":")
		if colonPos == -1 {
			colonPos = len(addr)
		}
		hostname := addr[:colonPos]
		config = config.Clone()
		config.ServerName = hostname
	}
	conn := Client(rawConn, config, opts...)
	if err := conn.HandshakeContext(ctx); err != nil {
		rawConn.Close()
		return nil, err
	}
	return conn, nil
}
