// Package readygrpc plugs readyconn into grpc-go, so that an idle gRPC
// connection owns no read buffer, over standard TLS, over TLS-authenticated
// ALTS records and in plaintext.
//
// grpc-go's HTTP/2 transport reads its connection through a buffer that it
// takes from a pool only when bytes have arrived, provided the connection has
// the method
//
//	ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error)
//
// (it checks for it before anything else). grpc-go gives that method only to
// bare TCP and Unix sockets, and only on Linux; over its TLS credentials the
// HTTP/2 read buffer and crypto/tls's record buffers stay pinned by every
// idle connection.
//
// [NewTLS] (and [NewClientTLSFromCert], [NewClientTLSFromFile],
// [NewServerTLSFromCert], [NewServerTLSFromFile]) are drop-in replacements
// for the functions of the same names in grpc's credentials package: the
// same standard TLS on the wire, so the other end can be any gRPC
// implementation, but the record layer of package tlsconn carries the data,
// and the connection handed to gRPC has the ReadOnReady method above.
//
// [NewCredentials] returns transport credentials that authenticate with a TLS
// 1.3 handshake ([alts.Client] and [alts.Server]: all of tls.Config, mutual
// TLS included) and then protect the connection with the ALTS record layer
// of package alts, which holds no buffer while idle. The connection handed
// to gRPC has the ReadOnReady method above, so gRPC's own read buffer is
// released while idle too, and peer certificates reach grpc's peer and authz
// packages through [credentials.TLSInfo]. Both ends must use these
// credentials: a plain gRPC TLS peer fails the handshake with an ALPN error.
//
// [Listener] and [Dialer] do the same for plaintext gRPC on every Unix, not
// only Linux.
//
// gRPC reads through ReadOnReady only while the environment variable
// GRPC_GO_EXPERIMENTAL_HTTP_FRAMER_READ_BUFFER_POOLING is not "false";
// setting it to "false" makes gRPC read every connection through a
// bufio.Reader again, these included.
package readygrpc

import (
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/mem"

	"github.com/readyconn/readyconn/alts"
)

// SecurityProtocol is the ProtocolInfo.SecurityProtocol of the credentials
// returned by NewCredentials.
const SecurityProtocol = "readyconn-alts"

// NewCredentials returns gRPC transport credentials that run the TLS 1.3
// handshake of package alts with cfg and then speak ALTS records
// (AES128GCMRekey with a key exported from the handshake). cfg is used as by
// grpc's credentials.NewTLS: a client needs RootCAs (or the system roots),
// a server Certificates; ClientAuth and ClientCAs give mutual TLS;
// VerifyPeerCertificate and VerifyConnection are honoured. cfg is cloned and
// not modified; its NextProtos and MinVersion are overridden (see
// [alts.Client]). opts configure the record layer of every connection, as
// for [alts.NewConn] (for example alts.WithPool).
//
// On the client the server name checked against the server certificate is
// the host part of the call's :authority (the dial target, or
// grpc.WithAuthority), as with grpc's TLS credentials. The client handshake
// is bounded by the context gRPC passes (the dial timeout); the server
// handshake by grpc.ConnectionTimeout.
//
// The AuthInfo of a connection is a [credentials.TLSInfo] with the handshake
// state (peer certificates, verified chains, server name) and security level
// PrivacyAndIntegrity. Its State can recompute the connection's record key
// (see [alts.Conn.ConnectionState]); do not hand it to untrusted code.
func NewCredentials(cfg *tls.Config, opts ...alts.Option) credentials.TransportCredentials {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	return &creds{cfg: cfg.Clone(), opts: append([]alts.Option(nil), opts...)}
}

type creds struct {
	cfg  *tls.Config
	opts []alts.Option
}

func (c *creds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg := c.cfg.Clone()
	host, _, err := net.SplitHostPort(authority)
	if err != nil {
		host = authority
	}
	cfg.ServerName = host
	ac, err := alts.ClientContext(ctx, raw, cfg, c.opts...)
	if err != nil {
		return nil, nil, err
	}
	return newConn(ac), authInfo(ac.ConnectionState()), nil
}

func (c *creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	ac, err := alts.Server(raw, c.cfg, c.opts...)
	if err != nil {
		return nil, nil, err
	}
	return newConn(ac), authInfo(ac.ConnectionState()), nil
}

func authInfo(state tls.ConnectionState) credentials.TLSInfo {
	info := credentials.TLSInfo{
		State:          state,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}
	info.SPIFFEID = spiffeID(state)
	return info
}

// spiffeID returns the SPIFFE ID of the peer's leaf certificate by the rules
// of grpc's own TLS credentials (internal/credentials.SPIFFEIDFromCert), so
// that a peer has the same identity over both: a URI SAN with the spiffe
// scheme, a trust domain of at most 255 bytes, a non-empty path, no user
// info, at most 2048 bytes in all, and no other URI SAN.
func spiffeID(state tls.ConnectionState) *url.URL {
	if len(state.PeerCertificates) == 0 {
		return nil
	}
	uris := state.PeerCertificates[0].URIs
	var id *url.URL
	for _, u := range uris {
		if u == nil || u.Scheme != "spiffe" || u.Opaque != "" || (u.User != nil && u.User.Username() != "") {
			continue
		}
		if len(u.String()) > 2048 || u.Host == "" || u.Path == "" || len(u.Host) > 255 || len(uris) > 1 {
			return nil
		}
		id = u
	}
	return id
}

// Info reports SecurityProtocol "readyconn-alts", version "1.3" (the TLS
// version of the handshake) and the configured ServerName.
func (c *creds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{
		SecurityProtocol: SecurityProtocol,
		//lint:ignore SA1019 gRPC's own TLS credentials still report it.
		SecurityVersion: "1.3",
		//lint:ignore SA1019 OverrideServerName sets it and must keep working.
		ServerName: c.cfg.ServerName,
	}
}

// Clone returns an independent copy.
func (c *creds) Clone() credentials.TransportCredentials {
	return NewCredentials(c.cfg, c.opts...)
}

// OverrideServerName sets the ServerName reported by Info, which gRPC uses
// as the default :authority and therefore as the name the server
// certificate is checked against.
//
// Deprecated: use grpc.WithAuthority, as for grpc's own credentials.
func (c *creds) OverrideServerName(name string) error {
	c.cfg.ServerName = name
	return nil
}

// Conn is the connection that the credentials hand to gRPC: an *alts.Conn
// with the ReadOnReady method that grpc-go's HTTP/2 transport looks for.
// It deliberately does not implement syscall.Conn, so no reader can bypass
// the record layer and read ciphertext from the socket.
type Conn struct {
	*alts.Conn
}

func newConn(c *alts.Conn) *Conn { return &Conn{Conn: c} }

// ReadOnReady is alts.Conn.ReadOnReady with gRPC's pool type: it waits for
// a frame without holding a buffer, then decrypts into a buffer of bufSize
// bytes taken from pool. The caller owns the returned buffer and puts it
// back to pool; n > 0 bytes are processed before err.
func (c *Conn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	if h := testHookReadOnReady.Load(); h != nil {
		p, done := (*h)(pool)
		defer done()
		pool = p
	}
	return c.Conn.ReadOnReady(bufSize, pool)
}

// testHookReadOnReady, when set by a test, is called at the start of every
// ReadOnReady (of Conn and plainConn) with gRPC's pool; the read uses the
// pool it returns and calls done when it returns. Tests use it to prove that
// gRPC reads through ReadOnReady and that a reader parked there while the
// connection is idle holds no buffer.
var testHookReadOnReady atomic.Pointer[func(mem.BufferPool) (p mem.BufferPool, done func())]
