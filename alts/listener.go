package alts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// DefaultHandshakeTimeout bounds each server handshake run by a listener
// made with [Listen] or [NewListener], or by a [ListenConfig] whose
// HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// DefaultMaxHandshakes is the number of handshakes a listener runs at once
// (including finished ones waiting for Accept) when
// ListenConfig.MaxHandshakes is zero. It is a bound on memory, not a defence
// against slow clients: that many silent clients delay new handshakes by up
// to the handshake timeout, so servers exposed to untrusted networks should
// size it (and HandshakeTimeout) for their load.
const DefaultMaxHandshakes = 1024

// ListenConfig configures a listener whose Accept returns connections that
// have completed the server handshake. The zero value is ready to use.
type ListenConfig struct {
	// HandshakeTimeout bounds each handshake; zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// MaxHandshakes bounds the handshakes in progress plus the handshaken
	// connections not yet taken by Accept; when it is reached the listener
	// stops accepting from the socket until one finishes. Zero means
	// DefaultMaxHandshakes.
	MaxHandshakes int

	// ConnOptions configure the record layer of every accepted Conn, as
	// for NewConn.
	ConnOptions []Option

	// HandshakeError, if not nil, is called (from the handshake's
	// goroutine) with the remote address and the error of every failed
	// handshake. Failed handshakes are never returned by Accept.
	HandshakeError func(remote net.Addr, err error)

	// AcceptError, if not nil, is called (from the listener's accept
	// goroutine) with every error of the inner listener's Accept other
	// than its closing, and the pause before the next Accept. Such errors
	// are never returned by Accept: the listener backs off and retries,
	// so that running out of file descriptors for a moment does not stop
	// a server. Log them here.
	AcceptError func(err error, retryIn time.Duration)
}

// Listen announces on the local network address and returns a listener
// whose Accept returns connections that completed [Server] with cfg. See
// [ListenConfig.NewListener].
func Listen(network, addr string, cfg *tls.Config, opts ...Option) (net.Listener, error) {
	lc := ListenConfig{ConnOptions: opts}
	return lc.Listen(context.Background(), network, addr, cfg)
}

// NewListener returns a listener that accepts connections from inner and
// returns them from Accept once they completed [Server] with cfg. See
// [ListenConfig.NewListener].
func NewListener(inner net.Listener, cfg *tls.Config, opts ...Option) net.Listener {
	lc := ListenConfig{ConnOptions: opts}
	return lc.NewListener(inner, cfg)
}

// Listen announces on the local network address (ctx bounds only the
// creation of the socket, as for net.ListenConfig) and wraps it with
// lc.NewListener.
func (lc *ListenConfig) Listen(ctx context.Context, network, addr string, cfg *tls.Config) (net.Listener, error) {
	if cfg == nil {
		return nil, errors.New("alts: Listen with a nil *tls.Config")
	}
	var nlc net.ListenConfig
	inner, err := nlc.Listen(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return lc.NewListener(inner, cfg), nil
}

// NewListener returns a listener that takes connections from inner and runs
// the server handshake of each in its own goroutine, bounded by
// HandshakeTimeout, so that a slow or silent client never delays the
// others. Accept returns a *Conn that completed the handshake, in the order
// handshakes finish; connections whose handshake fails are closed and never
// returned.
//
// The listener owns inner. Close closes inner, interrupts the handshakes in
// progress, closes the handshaken connections nobody accepted, and returns
// once every goroutine the listener started has ended; Accept then returns
// an error wrapping net.ErrClosed.
//
// When inner's Accept fails, the listener pauses (5 ms, doubling up to 1 s
// while failures go on) and tries again, whatever the error (see
// ListenConfig.AcceptError), except when inner was closed: then Accept
// returns inner's error from then on.
//
// NewListener panics if cfg is nil: a server cannot handshake without a
// certificate.
func (lc *ListenConfig) NewListener(inner net.Listener, cfg *tls.Config) net.Listener {
	if cfg == nil {
		panic("alts: NewListener with a nil *tls.Config")
	}
	l := &listener{
		inner:   inner,
		cfg:     cfg.Clone(),
		timeout: lc.HandshakeTimeout,
		opts:    append([]Option(nil), lc.ConnOptions...),
		onErr:   lc.HandshakeError,

		onAcceptErr: lc.AcceptError,
		slots:       make(chan struct{}, max(lc.MaxHandshakes, 0)),
		ready:       make(chan *Conn),
		done:        make(chan struct{}),
		failed:      make(chan struct{}),
		active:      make(map[net.Conn]struct{}),
	}
	if l.timeout <= 0 {
		l.timeout = DefaultHandshakeTimeout
	}
	if cap(l.slots) == 0 {
		l.slots = make(chan struct{}, DefaultMaxHandshakes)
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

type listener struct {
	inner   net.Listener
	cfg     *tls.Config
	timeout time.Duration
	opts    []Option
	onErr   func(net.Addr, error)

	onAcceptErr func(error, time.Duration)

	slots  chan struct{} // semaphore over handshakes not yet accepted
	ready  chan *Conn    // handshaken connections, unbuffered
	done   chan struct{} // closed by Close
	failed chan struct{} // closed when inner was closed under the listener
	err    error         // why; written before failed is closed

	closeOnce sync.Once
	wg        sync.WaitGroup

	mu     sync.Mutex
	active map[net.Conn]struct{} // sockets whose handshake is running
	closed bool
}

// Bounds of the pause after a failed Accept of the inner listener, as in
// net/http: 5 ms, doubling up to 1 s.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// nextBackoff is the pause after a failed Accept that followed a pause of
// prev (zero after a successful Accept).
func nextBackoff(prev time.Duration) time.Duration {
	return min(max(2*prev, minAcceptBackoff), maxAcceptBackoff)
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return
		}
		c, err := l.inner.Accept()
		if err != nil {
			<-l.slots
			if errors.Is(err, net.ErrClosed) {
				// The inner listener was closed (by Close, or by
				// someone else): Accept reports it.
				select {
				case <-l.done:
				default:
					l.err = err
					close(l.failed)
				}
				return
			}
			// Anything else may pass: running out of file descriptors
			// (EMFILE, ENFILE), a connection reset before it was
			// accepted, a deadline on inner. Back off and try again, as
			// net/http and grpc.Server do.
			backoff = nextBackoff(backoff)
			if l.onAcceptErr != nil {
				l.onAcceptErr(err, backoff)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
				continue
			case <-l.done:
				t.Stop()
				return
			}
		}
		backoff = 0
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			<-l.slots
			return
		}
		l.active[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(c)
	}
}

func (l *listener) serve(c net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.slots }()
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	conn, err := ServerContext(ctx, c, l.cfg, l.opts...)
	cancel()
	l.mu.Lock()
	delete(l.active, c)
	closed := l.closed
	l.mu.Unlock()
	if err != nil {
		if !closed && l.onErr != nil {
			l.onErr(c.RemoteAddr(), err)
		}
		return
	}
	select {
	case l.ready <- conn:
	case <-l.done:
		conn.Close()
	}
}

// Accept waits for the next connection that completed the handshake.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: l.inner.Addr().Network(), Addr: l.inner.Addr(), Err: net.ErrClosed}
	case <-l.failed:
		// Prefer a handshaken connection if one is waiting.
		select {
		case c := <-l.ready:
			return c, nil
		default:
		}
		return nil, l.err
	}
}

// Close stops the listener; see ListenConfig.NewListener.
func (l *listener) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.done)
		for c := range l.active {
			c.Close()
		}
		l.mu.Unlock()
		err = l.inner.Close()
		l.wg.Wait()
	})
	if err == net.ErrClosed {
		return fmt.Errorf("alts: listener already closed: %w", net.ErrClosed)
	}
	return err
}

// Addr returns the address of the inner listener.
func (l *listener) Addr() net.Addr { return l.inner.Addr() }
