package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readyconn/readyconn/bufferpool"
)

// appBufLen is the size of the application buffer that the tls and alts
// modes read into, and of the floor's on-stack read buffer.
const appBufLen = 64

// options are the settings of a measurement that apply to every mode.
type options struct {
	// Msg is the size of the one message each side of a pair mode
	// receives before it goes idle. The default is small on purpose: the
	// point is to make every lazily allocated buffer exist, not to move
	// data; a large one shows which buffers grow with traffic and stay.
	Msg int `json:"msg_bytes"`
	// Burst is the number of bytes every gRPC connection carries each way
	// after the first measurement and before the second (0: no second
	// measurement).
	Burst int `json:"burst_bytes"`
	// SetupOnReader runs each end's handshake and sends on the goroutine
	// that then reads and parks, instead of on a goroutine of their own.
	SetupOnReader bool `json:"setup_on_reader"`
}

// defaultOptions are the options of a plain run.
var defaultOptions = options{Msg: 100, Burst: 1 << 20}

// openTimeout bounds how long one mode may take to open its connections.
const openTimeout = 3 * time.Minute

// env is what a mode's open function works with: the number of connections
// to open, the mode's own pool, and the bookkeeping that lets measure close
// everything the mode created and wait for every goroutine it started.
type env struct {
	n       int
	pool    *bufferpool.Tiered
	opts    options
	message []byte // what every side of a pair mode sends

	// burst, set by modes that can carry traffic after the first
	// measurement (gRPC), sends opts.Burst bytes each way through every
	// connection and returns once they are idle again.
	burst func() error

	// opened is the number of connections (pairs) that finished their
	// message exchange; the progress display reads it.
	opened atomic.Int64

	mu      sync.Mutex
	closers []func() error
	wg      sync.WaitGroup // goroutines started with spawn

	failOnce sync.Once
	failed   chan struct{} // closed by fail
	err      error         // first error, set before failed is closed

	tlsOnce sync.Once
	tls     *tlsConfigs
	tlsErr  error
}

func newEnv(n int, pool *bufferpool.Tiered, opts options) *env {
	return &env{n: n, pool: pool, opts: opts, message: newMessage(opts.Msg), failed: make(chan struct{})}
}

// onClose registers f to run when the mode is torn down. Closers run in
// reverse order of registration.
func (e *env) onClose(f func() error) {
	e.mu.Lock()
	e.closers = append(e.closers, f)
	e.mu.Unlock()
}

// track registers c to be closed at tear-down.
func (e *env) track(c io.Closer) { e.onClose(c.Close) }

// spawn runs f in a goroutine that tear-down waits for.
func (e *env) spawn(f func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
}

// fail records the first error of the mode and wakes everybody waiting in
// the open phase.
func (e *env) fail(err error) {
	e.failOnce.Do(func() {
		e.err = err
		close(e.failed)
	})
}

// connOpened counts one finished connection.
func (e *env) connOpened() { e.opened.Add(1) }

// closeAll runs the closers in reverse order and waits for every spawned
// goroutine. It returns the first closer error that is not "already closed".
func (e *env) closeAll() error {
	e.mu.Lock()
	closers := e.closers
	e.closers = nil
	e.mu.Unlock()
	var first error
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil && !errors.Is(err, net.ErrClosed) && first == nil {
			first = err
		}
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("goroutines of the mode still running 30s after Close")
	}
	return first
}

// runWorkers calls open(i) for i in [0, n) from a few goroutines at a time,
// so that handshakes overlap without all n starting at once. It returns the
// first error of open or of the mode (env.fail), or a timeout.
func (e *env) runWorkers(open func(i int) error) error {
	workers := 4 * runtime.GOMAXPROCS(0)
	if workers > e.n {
		workers = e.n
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= e.n {
					return
				}
				select {
				case <-e.failed:
					return
				default:
				}
				if err := open(i); err != nil {
					e.fail(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	timer := time.NewTimer(openTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		e.fail(fmt.Errorf("timed out after %v with %d of %d connections open", openTimeout, e.opened.Load(), e.n))
		// Tear-down closes the connections, which unblocks the workers.
		return e.err
	}
	select {
	case <-e.failed:
		return e.err
	default:
		return nil
	}
}

// endpoint is one side of a symmetric connection in the modes where client
// and server run the same reader: recv blocks until one message (env.opts.Msg
// bytes) has arrived and consumes it; send writes one message.
type endpoint interface {
	recv() error
	send() error
}

// endFactory wraps one side of a fresh TCP connection, doing any handshake
// the mode needs. It runs on that side's setup goroutine.
type endFactory func(e *env, c net.Conn, client bool) (endpoint, error)

// openPairs opens e.n TCP loopback connections and gives each side an
// endpoint made by newEnd. The client sends one message; the server receives
// it and answers; the client receives the answer. Then both sides call recv
// again and stay blocked there until tear-down closes the connection.
// openPairs returns once every side of every connection has finished its
// exchange.
//
// Each side has a reader goroutine that only reads: it calls recv in a loop
// and does nothing else, so that its stack holds what the read path needs
// and no more. The handshake (newEnd) and the sends run on the side's setup
// goroutine, which ends after the exchange. With opts.SetupOnReader one
// goroutine per side does all of it, the way many programs are written;
// what that costs the parked stack is in the package documentation.
func (e *env) openPairs(newEnd endFactory) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	lnClosed := sync.OnceValue(ln.Close)
	e.onClose(lnClosed)

	var serversReady atomic.Int64
	allServersReady := make(chan struct{})
	serverReady := func() {
		if serversReady.Add(1) == int64(e.n) {
			close(allServersReady)
		}
	}
	runEnd := e.runEnd
	if e.opts.SetupOnReader {
		runEnd = e.runEndOnReader
	}

	e.spawn(func() {
		for range e.n {
			s, err := ln.Accept()
			if err != nil {
				select {
				case <-e.failed:
				default:
					e.fail(fmt.Errorf("accept: %w", err))
				}
				return
			}
			e.track(s)
			e.spawn(func() { runEnd(newEnd, s, false, serverReady) })
		}
		lnClosed()
	})

	var d net.Dialer
	err = e.runWorkers(func(int) error {
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		e.track(c)
		done := make(chan struct{})
		e.spawn(func() { runEnd(newEnd, c, true, func() { close(done) }) })
		select {
		case <-done:
			e.connOpened()
			return nil
		case <-e.failed:
			return e.err
		}
	})
	if err != nil {
		return err
	}
	select {
	case <-allServersReady:
		return nil
	case <-e.failed:
		return e.err
	case <-time.After(openTimeout):
		return fmt.Errorf("timed out waiting for the server sides")
	}
}

// runEnd is one side's setup goroutine: it makes the endpoint, starts the
// side's reader goroutine, sends (the client first, the server once the
// request arrived), and calls ready once the side's exchange is complete.
func (e *env) runEnd(newEnd endFactory, c net.Conn, client bool, ready func()) {
	ep, err := newEnd(e, c, client)
	if err != nil {
		e.fail(fmt.Errorf("%s handshake: %w", sideName(client), err))
		return
	}
	first := make(chan error, 1)
	e.spawn(func() { readLoop(ep, first) })
	if client {
		if err := ep.send(); err != nil {
			e.fail(fmt.Errorf("client send: %w", err))
			return
		}
	}
	select {
	case err = <-first:
	case <-e.failed:
		return
	}
	if err != nil {
		e.fail(fmt.Errorf("%s receive: %w", sideName(client), err))
		return
	}
	if !client {
		if err := ep.send(); err != nil {
			e.fail(fmt.Errorf("server send: %w", err))
			return
		}
	}
	ready()
}

// readLoop is a side's reader goroutine: it reports the result of the first
// recv on first and then keeps reading until the connection is closed.
func readLoop(ep endpoint, first chan<- error) {
	if r, ok := ep.(interface{ release() }); ok {
		defer r.release()
	}
	err := ep.recv()
	first <- err
	for err == nil {
		err = ep.recv()
	}
}

// runEndOnReader is runEnd and readLoop on one goroutine: handshake, sends
// and reads all happen on the goroutine that then parks in recv.
func (e *env) runEndOnReader(newEnd endFactory, c net.Conn, client bool, ready func()) {
	ep, err := newEnd(e, c, client)
	if err != nil {
		e.fail(fmt.Errorf("%s handshake: %w", sideName(client), err))
		return
	}
	if client {
		if err := ep.send(); err != nil {
			e.fail(fmt.Errorf("client send: %w", err))
			return
		}
	}
	if r, ok := ep.(interface{ release() }); ok {
		defer r.release()
	}
	if err := ep.recv(); err != nil {
		e.fail(fmt.Errorf("%s receive: %w", sideName(client), err))
		return
	}
	if !client {
		if err := ep.send(); err != nil {
			e.fail(fmt.Errorf("server send: %w", err))
			return
		}
	}
	ready()
	for ep.recv() == nil {
	}
}

func sideName(client bool) string {
	if client {
		return "client"
	}
	return "server"
}

// newMessage returns the message every side of a pair mode sends: n bytes
// of a recognisable pattern.
func newMessage(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// readN reads exactly n bytes from r into buf, a part at a time, so that
// the reader holds no buffer larger than buf whatever n is.
func readN(r io.Reader, buf []byte, n int) error {
	for got := 0; got < n; {
		k, err := r.Read(buf[:min(n-got, len(buf))])
		got += k
		if err != nil {
			if got == n {
				return nil
			}
			if err == io.EOF && got > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}
