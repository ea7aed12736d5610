//lint:file-ignore SA1019 the tests compare the deprecated ProtocolInfo fields that credentials must still fill.

package readygrpc

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/peer"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testcert"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/readyreader"
)

// handshakeResult is what one end of a handshake through transport
// credentials produced, reduced to what must be the same for grpc's TLS
// credentials and NewTLS.
type handshakeResult struct {
	err                string // "" for none
	conn               net.Conn
	authType           string
	level              credentials.SecurityLevel
	spiffeID           string
	version, suite     uint16
	protocol, sni      string
	peerCerts, chains  int
	didResume, hasConn bool
}

func result(conn net.Conn, ai credentials.AuthInfo, err error) handshakeResult {
	if err != nil {
		return handshakeResult{err: err.Error()}
	}
	info := ai.(credentials.TLSInfo)
	r := handshakeResult{
		conn:      conn,
		hasConn:   conn != nil,
		authType:  info.AuthType(),
		level:     info.SecurityLevel,
		version:   info.State.Version,
		suite:     info.State.CipherSuite,
		protocol:  info.State.NegotiatedProtocol,
		sni:       info.State.ServerName,
		peerCerts: len(info.State.PeerCertificates),
		chains:    len(info.State.VerifiedChains),
		didResume: info.State.DidResume,
	}
	if info.SPIFFEID != nil {
		r.spiffeID = info.SPIFFEID.String()
	}
	return r
}

// clientSide runs creds.ClientHandshake against a crypto/tls server with
// scfg on a loopback TCP pair. It returns the client's result and the
// ClientHelloInfo the server saw (nil if it saw none).
func clientSide(t *testing.T, creds credentials.TransportCredentials, authority string, scfg *tls.Config) (handshakeResult, *tls.ClientHelloInfo) {
	t.Helper()
	c, s := testnet.TCPPair(t)
	deadline := time.Now().Add(opBudget)
	require.NoError(t, s.SetDeadline(deadline))
	var hello *tls.ClientHelloInfo
	scfg = scfg.Clone()
	scfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		hello = h
		return nil, nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ts := tls.Server(s, scfg)
		if ts.Handshake() == nil {
			ts.Read(make([]byte, 1)) // until the client closes
		}
		ts.Close()
	}()
	conn, ai, err := creds.ClientHandshake(opCtx(t), authority, c)
	r := result(conn, ai, err)
	if conn != nil {
		conn.Close()
	}
	c.Close()
	<-done
	return r, hello
}

// serverSide runs creds.ServerHandshake against a crypto/tls client with
// ccfg on a loopback TCP pair, and returns the server's result.
func serverSide(t *testing.T, creds credentials.TransportCredentials, ccfg *tls.Config) handshakeResult {
	t.Helper()
	c, s := testnet.TCPPair(t)
	deadline := time.Now().Add(opBudget)
	require.NoError(t, c.SetDeadline(deadline))
	require.NoError(t, s.SetDeadline(deadline))
	done := make(chan struct{})
	go func() {
		defer close(done)
		tc := tls.Client(c, ccfg)
		if tc.Handshake() == nil {
			tc.Read(make([]byte, 1)) // until the server closes
		}
		tc.Close()
	}()
	conn, ai, err := creds.ServerHandshake(s)
	r := result(conn, ai, err)
	if conn != nil {
		conn.Close()
	}
	s.Close()
	<-done
	return r
}

// sameResult checks that NewTLS's result matches grpc's, apart from the
// connection object itself.
func sameResult(t *testing.T, stock, ours handshakeResult) {
	t.Helper()
	stock.conn, ours.conn = nil, nil
	assert.Equal(t, stock, ours)
}

// TestTLSClientLikeGRPC runs client handshakes through grpc's TLS
// credentials and through NewTLS with the same configuration and checks
// that the server saw the same ClientHello (ALPN list, versions, suites,
// server name) and that the client got the same result.
func TestTLSClientLikeGRPC(t *testing.T) {
	a, b := pkis(t)
	server := a.ServerConfig(false)
	server.NextProtos = []string{"h2"}
	noALPN := a.ServerConfig(false)
	tls12 := a.ServerConfig(false)
	tls12.MaxVersion = tls.VersionTLS12
	tls12.NextProtos = []string{"h2"}
	cfg := func(f func(*tls.Config)) *tls.Config {
		c := a.ClientConfig(false)
		if f != nil {
			f(c)
		}
		return c
	}
	tests := []struct {
		name      string
		client    *tls.Config
		authority string
		server    *tls.Config
		wantErr   bool
	}{
		{"defaults", cfg(nil), "localhost:443", server, false},
		{"authority without port", cfg(nil), "localhost", server, false},
		{"IP authority", cfg(nil), "127.0.0.1:50051", server, false},
		{"authority wins over ServerName", cfg(func(c *tls.Config) { c.ServerName = "evil.example" }), "localhost:1", server, false},
		{"wrong authority", cfg(nil), "evil.example:1", server, true},
		{"other NextProtos", cfg(func(c *tls.Config) { c.NextProtos = []string{"foo"} }), "localhost:1", server, false},
		{"h2 already there", cfg(func(c *tls.Config) { c.NextProtos = []string{"h2", "foo"} }), "localhost:1", server, false},
		{"server without ALPN", cfg(nil), "localhost:1", noALPN, true},
		{"TLS 1.2 server", cfg(nil), "localhost:1", tls12, false},
		{"MaxVersion 1.2", cfg(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }), "localhost:1", server, false},
		{"MaxVersion 1.1", cfg(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS11 }), "localhost:1", server, true},
		{"own CipherSuites", cfg(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305}
		}), "localhost:1", server, false},
		{"wrong CA", b.ClientConfig(false), "localhost:1", server, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stock, stockHello := clientSide(t, credentials.NewTLS(tt.client), tt.authority, tt.server)
			ours, ourHello := clientSide(t, NewTLS(tt.client), tt.authority, tt.server)
			if tt.wantErr {
				assert.NotEmpty(t, ours.err)
			} else {
				assert.Empty(t, ours.err)
			}
			sameResult(t, stock, ours)
			require.Equal(t, stockHello == nil, ourHello == nil)
			if stockHello != nil {
				assert.Equal(t, stockHello.SupportedProtos, ourHello.SupportedProtos, "ALPN")
				assert.Equal(t, stockHello.SupportedVersions, ourHello.SupportedVersions, "versions")
				assert.Equal(t, stockHello.CipherSuites, ourHello.CipherSuites, "cipher suites")
				assert.Equal(t, stockHello.ServerName, ourHello.ServerName, "SNI")
				assert.Equal(t, stockHello.SignatureSchemes, ourHello.SignatureSchemes, "signature schemes")
			}
		})
	}
}

// TestTLSServerLikeGRPC runs server handshakes through grpc's TLS
// credentials and through NewTLS with the same configuration, against the
// same crypto/tls clients, and checks that both give the same result.
func TestTLSServerLikeGRPC(t *testing.T) {
	a, _ := pkis(t)
	client := func(f func(*tls.Config)) *tls.Config {
		c := a.ClientConfig(false)
		c.ServerName = "localhost"
		c.NextProtos = []string{"h2"}
		if f != nil {
			f(c)
		}
		return c
	}
	perClient := a.ServerConfig(false)
	perClient.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return a.ServerConfig(true), nil // no NextProtos: the defaults add h2
	}
	tests := []struct {
		name    string
		server  *tls.Config
		client  *tls.Config
		wantErr bool
	}{
		{"defaults", a.ServerConfig(false), client(nil), false},
		{"client without ALPN", a.ServerConfig(false), client(func(c *tls.Config) { c.NextProtos = nil }), true},
		{"client without h2", a.ServerConfig(false), client(func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }), true},
		{"TLS 1.2 client", a.ServerConfig(false), client(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }), false},
		{"TLS 1.1 client", a.ServerConfig(false), client(func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS10
			c.MaxVersion = tls.VersionTLS11
		}), true},
		{"CBC-only TLS 1.2 client", a.ServerConfig(false), client(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}), true},
		{"mutual", a.ServerConfig(true), client(func(c *tls.Config) { c.Certificates = []tls.Certificate{a.Client} }), false},
		{"mutual, TLS 1.2", a.ServerConfig(true), client(func(c *tls.Config) {
			c.Certificates = []tls.Certificate{a.Client}
			c.MaxVersion = tls.VersionTLS12
		}), false},
		{"mutual, no client certificate", a.ServerConfig(true), client(nil), true},
		{"GetConfigForClient gets the defaults", perClient, client(func(c *tls.Config) { c.Certificates = []tls.Certificate{a.Client} }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stock := serverSide(t, credentials.NewTLS(tt.server), tt.client)
			ours := serverSide(t, NewTLS(tt.server), tt.client)
			if tt.wantErr {
				assert.NotEmpty(t, ours.err)
			} else {
				assert.Empty(t, ours.err)
				assert.Equal(t, "h2", ours.protocol)
			}
			sameResult(t, stock, ours)
			if tt.server.ClientAuth == tls.RequireAndVerifyClientCert && !tt.wantErr {
				assert.Equal(t, testcert.ClientURI, ours.spiffeID)
			}
		})
	}
}

// TestTLSALPNEnforcement checks the switch grpc-go reads from
// GRPC_ENFORCE_ALPN_ENABLED: with enforcement off, a peer without ALPN is
// accepted at both ends.
func TestTLSALPNEnforcement(t *testing.T) {
	for v, want := range map[string]bool{"": true, "true": true, "1": true, "false": false, "FALSE": false, "False": false, "0": true} {
		assert.Equal(t, want, enforceALPNFromEnv(v), "GRPC_ENFORCE_ALPN_ENABLED=%q", v)
	}
	require.True(t, enforceALPN, "the tests run with GRPC_ENFORCE_ALPN_ENABLED unset")
	a, _ := pkis(t)
	client := a.ClientConfig(false)
	client.ServerName = "localhost"
	creds := NewTLS(a.ServerConfig(false))
	r := serverSide(t, creds, client)
	assert.Equal(t, errNoALPN.Error(), r.err)
	cr, _ := clientSide(t, NewTLS(a.ClientConfig(false)), "localhost", a.ServerConfig(false))
	assert.Equal(t, errNoALPN.Error(), cr.err)

	enforceALPN = false
	defer func() { enforceALPN = true }()
	r = serverSide(t, creds, client)
	assert.Empty(t, r.err)
	assert.True(t, r.hasConn)
	assert.Empty(t, r.protocol)
	cr, _ = clientSide(t, NewTLS(a.ClientConfig(false)), "localhost", a.ServerConfig(false))
	assert.Empty(t, cr.err)
	assert.Empty(t, cr.protocol)
}

// TestTLSCredentialsAPI checks Info, Clone and OverrideServerName against
// grpc's TLS credentials, and that NewTLS leaves the caller's config
// alone.
func TestTLSCredentialsAPI(t *testing.T) {
	a, _ := pkis(t)
	cfg := a.ClientConfig(false)
	cfg.ServerName = "example.com"
	cfg.NextProtos = make([]string, 1, 4)
	cfg.NextProtos[0] = "foo"

	c := NewTLS(cfg)
	stock := credentials.NewTLS(cfg)
	assert.Equal(t, stock.Info(), c.Info())
	assert.Equal(t, credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2", ServerName: "example.com"}, c.Info())
	assert.Equal(t, []string{"foo"}, cfg.NextProtos, "NewTLS changed the caller's config")
	assert.Empty(t, cfg.NextProtos[:2][1], "NewTLS wrote into the caller's NextProtos array")
	cfg.ServerName = "changed"
	assert.Equal(t, "example.com", c.Info().ServerName, "NewTLS clones config")

	c2 := c.Clone()
	require.NoError(t, c2.OverrideServerName("other"))
	assert.Equal(t, "other", c2.Info().ServerName)
	assert.Equal(t, "example.com", c.Info().ServerName, "Clone is independent")

	assert.Equal(t, credentials.NewTLS(nil).Info(), NewTLS(nil).Info())
}

// TestTLSConstructors runs gRPC with the convenience constructors, from
// certificates and from PEM files, and checks that they fail as grpc's do.
func TestTLSConstructors(t *testing.T) {
	a, _ := pkis(t)
	files := writePEM(t, "files")
	fromFile := func(t *testing.T) credentials.TransportCredentials {
		c, err := NewServerTLSFromFile(files.ServerCert, files.ServerKey)
		require.NoError(t, err)
		return c
	}
	clientFromFile := func(t *testing.T, override string) credentials.TransportCredentials {
		c, err := NewClientTLSFromFile(files.CA, override)
		require.NoError(t, err)
		return c
	}
	call := func(t *testing.T, server, client credentials.TransportCredentials) error {
		m := mode{
			name: "constructors",
			server: func(_ testing.TB, lis net.Listener) (net.Listener, grpc.ServerOption) {
				return lis, grpc.Creds(server)
			},
			client: []grpc.DialOption{grpc.WithTransportCredentials(client)},
		}
		s := startServer(t, m)
		cc := dial(t, s.addr, m.client...)
		_, err := testpb.NewTestServiceClient(cc).EmptyCall(opCtx(t), &testpb.Empty{})
		return err
	}
	t.Run("FromCert", func(t *testing.T) {
		assert.NoError(t, call(t, NewServerTLSFromCert(&a.Server), NewClientTLSFromCert(a.Pool, "")))
	})
	t.Run("FromFile", func(t *testing.T) {
		assert.NoError(t, call(t, fromFile(t), clientFromFile(t, "")))
	})
	t.Run("serverNameOverride", func(t *testing.T) {
		c := clientFromFile(t, "localhost")
		assert.Equal(t, "localhost", c.Info().ServerName)
		assert.NoError(t, call(t, fromFile(t), c))
		err := call(t, fromFile(t), clientFromFile(t, "evil.example"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "evil.example")
	})
	t.Run("errors like grpc's", func(t *testing.T) {
		dir := t.TempDir()
		notPEM := filepath.Join(dir, "not.pem")
		require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
		missing := filepath.Join(dir, "missing.pem")

		for _, f := range []string{missing, notPEM} {
			_, err := NewClientTLSFromFile(f, "")
			_, stockErr := credentials.NewClientTLSFromFile(f, "")
			require.Error(t, err, f)
			assert.Equal(t, stockErr.Error(), err.Error())
			for _, pair := range [][2]string{{f, files.ServerKey}, {files.ServerCert, f}} {
				_, err := NewServerTLSFromFile(pair[0], pair[1])
				_, stockErr := credentials.NewServerTLSFromFile(pair[0], pair[1])
				require.Error(t, err, pair)
				assert.Equal(t, stockErr.Error(), err.Error())
			}
		}
		_, err := NewClientTLSFromFile(missing, "")
		assert.ErrorIs(t, err, os.ErrNotExist)
	})
}

// TestTLS12Peer runs gRPC over TLS 1.2 with every pairing, the version
// limited at one end or the other.
func TestTLS12Peer(t *testing.T) {
	a, _ := pkis(t)
	for _, p := range tlsPairings {
		for _, end := range []string{"client", "server"} {
			t.Run(p.String()+"/"+end+"=1.2", func(t *testing.T) {
				ccfg, scfg := a.ClientConfig(true), a.ServerConfig(true)
				if end == "client" {
					ccfg.MaxVersion = tls.VersionTLS12
				} else {
					scfg.MaxVersion = tls.VersionTLS12
				}
				m := p.mode(ccfg, scfg, true)
				s := startServer(t, m)
				tc := testpb.NewTestServiceClient(dial(t, s.addr, m.client...))
				var pr peer.Peer
				resp, err := tc.UnaryCall(opCtx(t), &testpb.SimpleRequest{ResponseSize: 1 << 20, Payload: payload(1 << 20), FillUsername: true}, grpc.Peer(&pr))
				require.NoError(t, err)
				assert.Equal(t, payload(1<<20).Body, resp.Payload.GetBody())
				assert.Equal(t, "client", resp.Username)
				info, ok := pr.AuthInfo.(credentials.TLSInfo)
				require.True(t, ok, "%T", pr.AuthInfo)
				assert.Equal(t, uint16(tls.VersionTLS12), info.State.Version)
				assert.Equal(t, "h2", info.State.NegotiatedProtocol)

				st, err := tc.FullDuplexCall(opCtx(t))
				require.NoError(t, err)
				for _, n := range []int32{1, 100 << 10, 1 << 20} {
					require.NoError(t, st.Send(&testpb.StreamingOutputCallRequest{Payload: payload(n)}))
					resp, err := st.Recv()
					require.NoError(t, err)
					require.Equal(t, payload(n).Body, resp.Payload.GetBody())
				}
				require.NoError(t, st.CloseSend())
			})
		}
	}
}

// grpcReadyReader is the method grpc-go's HTTP/2 transport looks for.
type grpcReadyReader interface {
	ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error)
}

// TestTLSReadsOnReady checks that tlsReadsOnReady, which the tests of idle
// memory go by, says what the credentials do: whether the connection they
// hand to gRPC has ReadOnReady.
func TestTLSReadsOnReady(t *testing.T) {
	a, _ := pkis(t)
	scfg := a.ServerConfig(false)
	c, s := testnet.TCPPair(t)
	done := make(chan handshakeResult, 1)
	go func() {
		conn, ai, err := NewTLS(scfg).ServerHandshake(s)
		done <- result(conn, ai, err)
	}()
	conn, _, err := NewTLS(a.ClientConfig(false)).ClientHandshake(opCtx(t), "localhost:1", c)
	require.NoError(t, err)
	defer conn.Close()
	sr := <-done
	require.Empty(t, sr.err)
	defer sr.conn.Close()
	for _, conn := range []net.Conn{conn, sr.conn} {
		_, ok := conn.(grpcReadyReader)
		assert.Equal(t, tlsReadsOnReady, ok, "%T: tlsReadsOnReady is out of date", conn)
		_, ok = conn.(syscall.Conn)
		assert.True(t, ok, "%T hides the socket from channelz", conn)
	}
}

// fakeRecordReader stands in for *tlsconn.Conn: a *tls.Conn with a
// ReadOnReady (through readyreader's blocking fallback, so it pins while it
// waits) and a Pinning method.
type fakeRecordReader struct {
	net.Conn
	rr      readyreader.Reader
	pinning bool
}

func (f *fakeRecordReader) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	return f.rr.ReadOnReady(size, pool)
}

func (f *fakeRecordReader) Pinning() bool { return f.pinning }

func newFake(c net.Conn, pinning bool) net.Conn {
	return &fakeRecordReader{Conn: c, rr: readyreader.New(c), pinning: pinning}
}

// TestForGRPC checks the shapes forGRPC hands to gRPC.
func TestForGRPC(t *testing.T) {
	tcp, _ := testnet.TCPPair(t)
	pipe, other := net.Pipe()
	defer pipe.Close()
	defer other.Close()
	tc := tls.Client(tcp, &tls.Config{})
	tests := []struct {
		name               string
		raw, conn          net.Conn
		wantReady, wantSys bool
	}{
		{"crypto/tls over TCP", tcp, tc, false, true},
		{"crypto/tls over a pipe", pipe, tc, false, false},
		{"record reader over TCP", tcp, newFake(tc, false), true, true},
		{"record reader over a pipe", pipe, newFake(tc, false), true, false},
		{"pinning record reader over TCP", tcp, newFake(tc, true), false, true},
		{"pinning record reader over a pipe", pipe, newFake(tc, true), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := forGRPC(tt.raw, tt.conn)
			_, ready := got.(grpcReadyReader)
			assert.Equal(t, tt.wantReady, ready, "ReadOnReady")
			_, sys := got.(syscall.Conn)
			assert.Equal(t, tt.wantSys, sys, "SyscallConn")
			if !tt.wantSys && !tt.wantReady {
				assert.Same(t, tt.conn, got)
			}
		})
	}
}

// TestTLSRecordReaderPath runs gRPC over NewTLS with a stand-in for
// *tlsconn.Conn, to check the path a non-pinning record layer takes: gRPC
// reads it through ReadOnReady and the bytes arrive intact; a record layer
// that reports Pinning is read as grpc's credentials read a *tls.Conn.
func TestTLSRecordReaderPath(t *testing.T) {
	for _, pinning := range []bool{false, true} {
		name := "non-pinning"
		if pinning {
			name = "pinning"
		}
		t.Run(name, func(t *testing.T) {
			hook := func(c net.Conn) net.Conn { return newFake(c, pinning) }
			require.True(t, testHookTLSConn.CompareAndSwap(nil, &hook))
			defer testHookTLSConn.Store(nil)
			probe := installProbe(t)

			m := tlsPairing{client: readyTLS, server: readyTLS}.tlsMode(t, true)
			s := startServer(t, m)
			tc := testpb.NewTestServiceClient(dial(t, s.addr, m.client...))
			for _, n := range []int32{0, 1, 100 << 10, 4 << 20} {
				resp, err := tc.UnaryCall(opCtx(t), &testpb.SimpleRequest{ResponseSize: n, Payload: payload(n), FillUsername: true})
				require.NoError(t, err)
				require.Equal(t, payload(n).Body, resp.Payload.GetBody())
				assert.Equal(t, "client", resp.Username)
			}
			if pinning {
				assert.Zero(t, probe.calls.Load(), "gRPC read a pinning record layer through ReadOnReady")
			} else {
				assert.Positive(t, probe.calls.Load(), "gRPC did not read the record layer through ReadOnReady")
			}
		})
	}
}

// TestTLSHandshakeClosesOnError checks that a failed client handshake
// closes the raw connection, as grpc's credentials do.
func TestTLSHandshakeClosesOnError(t *testing.T) {
	_, b := pkis(t)
	a, _ := pkis(t)
	c, s := testnet.TCPPair(t)
	go func() {
		tls.Server(s, a.ServerConfig(false)).Handshake()
		s.Close()
	}()
	_, _, err := NewTLS(b.ClientConfig(false)).ClientHandshake(opCtx(t), "localhost:1", c)
	var uae x509.UnknownAuthorityError
	require.ErrorAs(t, err, &uae)
	_, err = c.Write([]byte{0})
	assert.ErrorIs(t, err, net.ErrClosed)
}
