package readygrpc

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc/mem"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/tlsconn"
)

// clientHandshake and serverHandshake are the only places that name the
// TLS implementation behind NewTLS. They run the handshake on raw with cfg,
// bounded by ctx, and return the connection that carries the data and the
// handshake's state; on error raw is closed.
//
// They run tlsconn: crypto/tls's handshake, then tlsconn's record layer,
// which holds no buffer while the connection is idle; forGRPC hands the
// *tlsconn.Conn to gRPC with the ReadOnReady method gRPC's HTTP/2 transport
// reads through. Where tlsconn had to leave the data to crypto/tls
// (Pinning), gRPC reads the connection through its bufio.Reader, as with
// grpc's own credentials.
func clientHandshake(ctx context.Context, raw net.Conn, cfg *tls.Config) (net.Conn, tls.ConnectionState, error) {
	return handshake(ctx, tlsconn.Client(raw, cfg, tlsOptions...))
}

func serverHandshake(ctx context.Context, raw net.Conn, cfg *tls.Config) (net.Conn, tls.ConnectionState, error) {
	return handshake(ctx, tlsconn.Server(raw, cfg, tlsOptions...))
}

// tlsOptions configure every tlsconn.Conn of the TLS credentials: gRPC's
// dependencies already bring golang.org/x/crypto, whose ChaCha20-Poly1305
// lets tlsconn carry the suites that clients without AES hardware choose.
var tlsOptions = []tlsconn.Option{tlsconn.WithChaCha20Poly1305(chacha20poly1305.New)}

var _ recordReader = (*tlsconn.Conn)(nil)

// handshakeConn is the part of the API of *tls.Conn and *tlsconn.Conn that
// handshake uses.
type handshakeConn interface {
	net.Conn
	HandshakeContext(context.Context) error
	ConnectionState() tls.ConnectionState
}

func handshake(ctx context.Context, c handshakeConn) (net.Conn, tls.ConnectionState, error) {
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, tls.ConnectionState{}, err
	}
	var conn net.Conn = c
	if h := testHookTLSConn.Load(); h != nil {
		conn = (*h)(c)
	}
	return conn, c.ConnectionState(), nil
}

// testHookTLSConn, when set by a test, replaces the connection a handshake
// returns, before forGRPC sees it. Tests use it to run the ReadOnReady path
// of forGRPC with a stand-in for *tlsconn.Conn.
var testHookTLSConn atomic.Pointer[func(net.Conn) net.Conn]

// recordReader is a TLS connection whose record layer can wait for data
// without holding a buffer, such as *tlsconn.Conn. Pinning reports that it
// could not: crypto/tls carries the data, and ReadOnReady would pin a
// buffer while it waits.
type recordReader interface {
	net.Conn
	ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error)
	Pinning() bool
}

// forGRPC returns the connection the credentials hand to gRPC for conn, a
// TLS connection established over raw.
//
// A recordReader that is not pinning gets the ReadOnReady method with
// gRPC's pool type that grpc-go's HTTP/2 transport looks for, so that gRPC
// too reads without holding a buffer while idle. Any other conn is handed
// over as grpc's credentials hand over a *tls.Conn: gRPC reads it through a
// bufio.Reader.
//
// Either way the result implements syscall.Conn when raw does, for
// channelz, as with grpc's credentials. grpc-go and readyreader never read
// such a socket directly: they take ReadOnReady where there is one, and
// read raw only from the net package's own socket types.
func forGRPC(raw, conn net.Conn) net.Conn {
	sc, hasSocket := raw.(syscall.Conn)
	if rr, ok := conn.(recordReader); ok && !rr.Pinning() {
		if hasSocket {
			return &tlsSocketConn{tlsConn{rr}, sc}
		}
		return &tlsConn{rr}
	}
	if hasSocket {
		return &socketConn{conn, sc}
	}
	return conn
}

// tlsConn is a non-pinning TLS connection as gRPC sees it.
type tlsConn struct {
	recordReader
}

// ReadOnReady is the record layer's ReadOnReady with gRPC's pool type: it
// waits for a record without holding a buffer, then decrypts into a buffer
// of bufSize bytes taken from pool. The caller owns the returned buffer and
// puts it back to pool; n > 0 bytes are processed before err.
func (c *tlsConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	if h := testHookReadOnReady.Load(); h != nil {
		p, done := (*h)(pool)
		defer done()
		pool = p
	}
	return c.recordReader.ReadOnReady(bufSize, pool)
}

// tlsSocketConn is a tlsConn whose socket is reachable for channelz.
type tlsSocketConn struct {
	tlsConn
	sc syscall.Conn
}

// SyscallConn returns the raw connection of the socket under the TLS
// connection. The bytes on it are ciphertext.
func (c *tlsSocketConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }

// socketConn is grpc's own shape for a TLS connection over a socket: the
// TLS connection for data, the socket for channelz.
type socketConn struct {
	net.Conn
	sc syscall.Conn
}

// SyscallConn returns the raw connection of the socket under the TLS
// connection. The bytes on it are ciphertext.
func (c *socketConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }
