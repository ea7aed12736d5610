package tlsconn

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/readyconn/readyconn/internal/testnet"
)

// TestNetConn runs golang.org/x/net/nettest.TestConn, the conformance suite
// of net.Conn, on tlsconn pairs: over TCP (the non-pinning path) and over
// net.Pipe (the blocking fallback, whose writes complete only as the peer
// reads, so timeouts cut records midway), with TLS 1.3 and 1.2. It includes
// PastTimeout, FutureTimeout and ConcurrentMethods, which crypto/tls fails
// because a timed-out Write breaks a *tls.Conn for good.
func TestNetConn(t *testing.T) {
	for _, transport := range []string{"tcp", "pipe"} {
		for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			t.Run(transport+"/"+tls.VersionName(version), func(t *testing.T) {
				nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
					var a, b net.Conn
					if transport == "tcp" {
						a, b = testnet.TCPPair(t)
					} else {
						a, b = net.Pipe()
					}
					scfg := serverConfig(t)
					scfg.MaxVersion = version
					client := Client(a, clientConfig(t))
					server := Server(b, scfg)
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					errc := make(chan error, 1)
					go func() { errc <- server.HandshakeContext(ctx) }()
					if err := client.HandshakeContext(ctx); err != nil {
						a.Close()
						b.Close()
						<-errc
						return nil, nil, nil, err
					}
					if err := <-errc; err != nil {
						a.Close()
						b.Close()
						return nil, nil, nil, err
					}
					// A close_notify nobody reads (net.Pipe) would wait
					// 5 s: close the transport first.
					return client, server, func() { a.Close(); b.Close(); client.Close(); server.Close() }, nil
				})
			})
		}
	}
}
