package benchmarks

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/readyconn/readyconn/benchmarks/internal/cputime"
	"github.com/readyconn/readyconn/internal/testcert"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/tlsconn"
)

// tlsImpls are the TLS implementations compared: both ends crypto/tls, and
// both ends tlsconn (crypto/tls's handshake, tlsconn's record layer), TLS
// 1.3 with AES-128-GCM over loopback TCP.
var tlsImpls = []struct {
	name string
	pair func(*testing.B, uint16) (net.Conn, net.Conn)
}{{"crypto-tls", cryptoTLSPair}, {"tlsconn", tlsconnPair}}

var benchPKI = func() *testcert.PKI {
	p, err := testcert.New("bench")
	if err != nil {
		panic(err)
	}
	return p
}()

func tlsBenchConfigs(version uint16) (client, server *tls.Config) {
	server = benchPKI.ServerConfig(false)
	server.MaxVersion = version
	client = benchPKI.ClientConfig(false)
	client.ServerName = "localhost"
	return client, server
}

type handshaker interface {
	net.Conn
	Handshake() error
	ConnectionState() tls.ConnectionState
}

func handshakePair(b *testing.B, cli, srv handshaker) {
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if cs := cli.ConnectionState(); cs.Version == tls.VersionTLS13 && cs.CipherSuite != tls.TLS_AES_128_GCM_SHA256 {
		b.Fatalf("negotiated %s", tls.CipherSuiteName(cs.CipherSuite))
	}
	b.Cleanup(func() { cli.Close(); srv.Close() })
}

func cryptoTLSPair(b *testing.B, version uint16) (net.Conn, net.Conn) {
	a, s := testnet.TCPPair(b)
	ccfg, scfg := tlsBenchConfigs(version)
	cli, srv := tls.Client(a, ccfg), tls.Server(s, scfg)
	handshakePair(b, cli, srv)
	return cli, srv
}

func tlsconnPair(b *testing.B, version uint16) (net.Conn, net.Conn) {
	a, s := testnet.TCPPair(b)
	ccfg, scfg := tlsBenchConfigs(version)
	cli, srv := tlsconn.Client(a, ccfg), tlsconn.Server(s, scfg)
	handshakePair(b, cli, srv)
	if cli.Pinning() || srv.Pinning() {
		b.Fatalf("tlsconn fell back to crypto/tls: %v", cli.PinningReason())
	}
	return cli, srv
}

var tlsVersions = []struct {
	name string
	v    uint16
}{{"1.3", tls.VersionTLS13}, {"1.2", tls.VersionTLS12}}

// BenchmarkTLSStream writes messages of 1 KiB, 16 KiB and 1 MiB from one end
// and reads them at the other with a buffer of the same size.
func BenchmarkTLSStream(b *testing.B) {
	for _, v := range tlsVersions {
		for _, size := range altsSizes {
			for _, impl := range tlsImpls {
				b.Run("tls="+v.name+"/size="+size.name+"/impl="+impl.name, func(b *testing.B) {
					w, r := impl.pair(b, v.v)
					stream(b, w, r, size.n)
				})
			}
		}
	}
}

// BenchmarkTLSPingPong sends a message of 64 B or 1 KiB and waits for the
// echo: one record per wake-up, the request/response pattern of RPC.
func BenchmarkTLSPingPong(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"64", 64}, {"1K", 1 << 10}} {
		for _, impl := range tlsImpls {
			b.Run("size="+size.name+"/impl="+impl.name, func(b *testing.B) {
				c, s := impl.pair(b, tls.VersionTLS13)
				go func() {
					buf := make([]byte, size.n)
					for {
						if _, err := io.ReadFull(s, buf); err != nil {
							return
						}
						if _, err := s.Write(buf); err != nil {
							return
						}
					}
				}()
				msg := make([]byte, size.n)
				buf := make([]byte, size.n)
				b.SetBytes(int64(size.n))
				b.ReportAllocs()
				b.ResetTimer()
				defer cputime.Start(b).Stop()
				for range b.N {
					if _, err := c.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
