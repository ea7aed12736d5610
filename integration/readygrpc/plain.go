package readygrpc

import (
	"context"
	"net"
	"strings"
	"syscall"

	"google.golang.org/grpc/mem"

	"github.com/readyconn/readyconn/readyreader"
)

// Listener wraps a listener for a plaintext gRPC server
// (grpc.Server.Serve(readygrpc.Listener(lis))) so that every accepted
// connection on which readyreader can wait without a buffer (TCP and Unix
// sockets on every Unix) carries the ReadOnReady method grpc-go looks for;
// gRPC then holds no read buffer for an idle connection. Other connections
// are returned unchanged. Closing the returned listener closes inner.
//
// grpc-go sets TCP_USER_TIMEOUT (Linux, with keepalive, which servers enable
// by default) only on a bare *net.TCPConn, so it is not set on connections
// wrapped by Listener, Dialer or WrapConn.
func Listener(inner net.Listener) net.Listener {
	return &plainListener{Listener: inner}
}

type plainListener struct{ net.Listener }

func (l *plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return WrapConn(c), nil
}

// Dialer returns a dialer for grpc.WithContextDialer that dials plaintext
// connections and wraps them with WrapConn. network is passed to
// net.Dialer; if it is empty, addresses that begin with "/" or "@", or with
// the prefix "unix:" (which is removed), are dialed as "unix" and all others
// as "tcp". d may be nil.
func Dialer(d *net.Dialer, network string) func(ctx context.Context, addr string) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		nw := network
		if nw == "" {
			switch {
			case strings.HasPrefix(addr, "unix:"):
				nw, addr = "unix", strings.TrimPrefix(strings.TrimPrefix(addr, "unix:"), "//")
			case strings.HasPrefix(addr, "/"), strings.HasPrefix(addr, "@"):
				nw = "unix"
			default:
				nw = "tcp"
			}
		}
		c, err := d.DialContext(ctx, nw, addr)
		if err != nil {
			return nil, err
		}
		return WrapConn(c), nil
	}
}

// WrapConn returns c with the ReadOnReady method grpc-go looks for, backed by
// readyreader.NewNonBlocking(c), or c itself when NewNonBlocking returns nil
// (reads on c would pin memory anyway). The result also implements
// syscall.Conn (the data on the socket is plaintext), for channelz.
func WrapConn(c net.Conn) net.Conn {
	rr := readyreader.NewNonBlocking(c)
	if rr == nil {
		return c
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	return &plainConn{Conn: c, sc: sc, rr: rr}
}

type plainConn struct {
	net.Conn
	sc syscall.Conn
	rr readyreader.Reader
}

// ReadOnReady forwards to the readyreader of the socket.
func (c *plainConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	if h := testHookReadOnReady.Load(); h != nil {
		p, done := (*h)(pool)
		defer done()
		pool = p
	}
	return c.rr.ReadOnReady(bufSize, pool)
}

// SyscallConn returns the socket's raw connection.
func (c *plainConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }
