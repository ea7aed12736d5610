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
// (grpc.Server.Serve(readygrpc.Listener(lis))) so that gRPC holds no read
// buffer for an idle connection: every accepted connection goes through
// [WrapConn]. Closing the returned listener closes inner.
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

// WrapConn returns a plaintext connection for gRPC that gRPC reads without
// holding a buffer while the connection is idle, where that is possible:
//
//   - On Linux, a bare *net.TCPConn or *net.UnixConn is returned unchanged:
//     grpc-go (since v1.81) reads these itself without pinning a buffer,
//     and it sets TCP_USER_TIMEOUT (dead-peer detection under keepalive,
//     which servers enable by default) only on a *net.TCPConn it can see.
//   - Otherwise, when readyreader.NewNonBlocking(c) can wait for c without
//     a buffer (TCP and Unix sockets on the other Unix systems), c is
//     wrapped in a connection with the ReadOnReady method grpc-go looks for.
//     Nothing is lost by hiding the socket there: grpc-go sets
//     TCP_USER_TIMEOUT on Linux alone, where the first case applies. The
//     wrapper also implements syscall.Conn (the data on the socket is
//     plaintext), for channelz.
//   - Everything else is returned unchanged: reads on it pin memory
//     anyway.
//
// gRPC reads through ReadOnReady only while the environment variable
// GRPC_GO_EXPERIMENTAL_HTTP_FRAMER_READ_BUFFER_POOLING is not "false".
func WrapConn(c net.Conn) net.Conn {
	if grpcReadsWithoutPinning(c) {
		return c
	}
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
