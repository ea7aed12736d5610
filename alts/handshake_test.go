package alts

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/internal/testcert"
	"github.com/readyconn/readyconn/internal/testnet"
)

var (
	hsPKIOnce      sync.Once
	hsPKIA, hsPKIB *testcert.PKI // two unrelated CAs
	errHsPKI       error
	hsTimeout      = 10 * time.Second
)

func hsPKIs(t testing.TB) (a, b *testcert.PKI) {
	hsPKIOnce.Do(func() {
		if hsPKIA, errHsPKI = testcert.New("A"); errHsPKI != nil {
			return
		}
		hsPKIB, errHsPKI = testcert.New("B")
	})
	require.NoError(t, errHsPKI)
	return hsPKIA, hsPKIB
}

// hsClientConfig is p.ClientConfig for ServerName "localhost".
func hsClientConfig(p *testcert.PKI, cert bool) *tls.Config {
	cfg := p.ClientConfig(cert)
	cfg.ServerName = "localhost"
	return cfg
}

type hsResult struct {
	conn *Conn
	err  error
}

// hsPair runs Client and Server on the ends of a TCP connection.
func hsPair(t testing.TB, ccfg, scfg *tls.Config) (client, server hsResult) {
	cc, sc := testnet.TCPPair(t)
	cc.SetDeadline(time.Now().Add(hsTimeout))
	sc.SetDeadline(time.Now().Add(hsTimeout))
	ch := make(chan hsResult, 1)
	go func() {
		c, err := Server(sc, scfg)
		ch <- hsResult{c, err}
	}()
	c, err := Client(cc, ccfg)
	client = hsResult{c, err}
	server = <-ch
	for _, r := range []hsResult{client, server} {
		if r.conn != nil {
			t.Cleanup(func() { r.conn.Close() })
		}
	}
	return client, server
}

func TestHandshakeMutualTLS(t *testing.T) {
	a, _ := hsPKIs(t)
	var clientVerified, serverVerified atomic.Int32
	scfg := a.ServerConfig(true)
	scfg.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
		serverVerified.Add(1)
		if len(chains) == 0 || chains[0][0].Subject.CommonName != "client" {
			return errors.New("unexpected client")
		}
		return nil
	}
	ccfg := hsClientConfig(a, true)
	ccfg.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
		clientVerified.Add(1)
		return nil
	}
	c, s := hsPair(t, ccfg, scfg)
	require.NoError(t, c.err)
	require.NoError(t, s.err)
	assert.EqualValues(t, 1, clientVerified.Load())
	assert.EqualValues(t, 1, serverVerified.Load())

	cs, ss := c.conn.ConnectionState(), s.conn.ConnectionState()
	for _, st := range []tls.ConnectionState{cs, ss} {
		assert.True(t, st.HandshakeComplete)
		assert.Equal(t, uint16(tls.VersionTLS13), st.Version)
		assert.Equal(t, ALPN, st.NegotiatedProtocol)
		require.NotEmpty(t, st.PeerCertificates)
		require.NotEmpty(t, st.VerifiedChains)
	}
	assert.Equal(t, "server", cs.PeerCertificates[0].Subject.CommonName)
	assert.Equal(t, "client", ss.PeerCertificates[0].Subject.CommonName)
	assert.Equal(t, "localhost", ss.ServerName)
	assert.False(t, cs.DidResume)

	// Both ends derived the same exporter secret.
	ck, err := cs.ExportKeyingMaterial("x", nil, 16)
	require.NoError(t, err)
	sk, err := ss.ExportKeyingMaterial("x", nil, 16)
	require.NoError(t, err)
	assert.Equal(t, ck, sk)

	hsEcho(t, c.conn, s.conn)
}

// echo sends a message each way and checks it arrives.
func hsEcho(t testing.TB, c, s net.Conn) {
	t.Helper()
	msg := []byte("ping over alts")
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(s, buf); err != nil {
			errc <- err
			return
		}
		_, err := s.Write(bytes.ToUpper(buf))
		errc <- err
	}()
	_, err := c.Write(msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.NoError(t, <-errc)
	assert.Equal(t, bytes.ToUpper(msg), got)
}

// TestHandshakeDataRightAfter checks that nothing sent right after the
// handshake is lost at the switch to ALTS: both ends write as soon as their
// handshake returns, before the peer's handshake may have returned.
func TestHandshakeDataRightAfter(t *testing.T) {
	a, _ := hsPKIs(t)
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("mutual=%v", mutual), func(t *testing.T) {
			for i := range 30 {
				cc, sc := testnet.TCPPair(t)
				cc.SetDeadline(time.Now().Add(hsTimeout))
				sc.SetDeadline(time.Now().Add(hsTimeout))
				msgC := bytes.Repeat([]byte{byte(i), 'c'}, 100+i*37)
				msgS := bytes.Repeat([]byte{byte(i), 's'}, 50+i*91)
				errc := make(chan error, 1)
				var gotC []byte
				go func() {
					s, err := Server(sc, a.ServerConfig(mutual))
					if err != nil {
						errc <- err
						return
					}
					defer s.Close()
					// Server writes first, before reading anything.
					if _, err := s.Write(msgS); err != nil {
						errc <- err
						return
					}
					gotC = make([]byte, 3*len(msgC))
					_, err = io.ReadFull(s, gotC)
					errc <- err
				}()
				c, err := Client(cc, hsClientConfig(a, mutual))
				require.NoError(t, err)
				for range 3 {
					_, err = c.Write(msgC)
					require.NoError(t, err)
				}
				gotS := make([]byte, len(msgS))
				_, err = io.ReadFull(c, gotS)
				require.NoError(t, err)
				require.NoError(t, <-errc)
				require.Equal(t, msgS, gotS)
				require.Equal(t, bytes.Repeat(msgC, 3), gotC)
				c.Close()
			}
		})
	}
}

func TestHandshakeWrongRootCA(t *testing.T) {
	a, b := hsPKIs(t)
	c, s := hsPair(t, hsClientConfig(b, false), a.ServerConfig(false))
	require.Error(t, c.err)
	assert.ErrorIs(t, c.err, ErrHandshake)
	var verr *tls.CertificateVerificationError
	assert.ErrorAs(t, c.err, &verr)
	require.Error(t, s.err)
	assert.ErrorIs(t, s.err, ErrHandshake)
	assert.ErrorContains(t, s.err, "bad certificate", "server sees the client's alert")
}

func TestHandshakeClientCertRequired(t *testing.T) {
	a, b := hsPKIs(t)
	// The server requires a client certificate from CA a; the client
	// presents one from CA b. The server refuses it.
	ccfg := hsClientConfig(a, false)
	ccfg.Certificates = []tls.Certificate{b.Client}
	c, s := hsPair(t, ccfg, a.ServerConfig(true))
	require.Error(t, s.err)
	assert.ErrorIs(t, s.err, ErrHandshake)
	assert.ErrorContains(t, s.err, "certificate")
	// In TLS 1.3 the client's handshake is over before the server
	// judges its certificate; the refusal reaches the client as a failed
	// first read, never as data.
	if c.err == nil {
		c.conn.SetReadDeadline(time.Now().Add(hsTimeout))
		n, err := c.conn.Read(make([]byte, 10))
		assert.Zero(t, n)
		assert.Error(t, err)
		assert.NotErrorIs(t, err, os.ErrDeadlineExceeded)
	}

	// Without any certificate, too.
	c, s = hsPair(t, hsClientConfig(a, false), a.ServerConfig(true))
	assert.ErrorIs(t, s.err, ErrHandshake)
	assert.ErrorContains(t, s.err, "certificate")
}

func TestHandshakeVerifyPeerCertificateRejects(t *testing.T) {
	a, _ := hsPKIs(t)
	errNope := errors.New("not on the allow list")
	ccfg := hsClientConfig(a, false)
	ccfg.VerifyPeerCertificate = func([][]byte, [][]*x509.Certificate) error { return errNope }
	c, s := hsPair(t, ccfg, a.ServerConfig(false))
	assert.ErrorIs(t, c.err, errNope)
	assert.ErrorIs(t, c.err, ErrHandshake)
	assert.ErrorIs(t, s.err, ErrHandshake)
}

// TestHandshakePlainTLSPeers runs alts against crypto/tls peers that do not
// speak alts; every combination must fail the handshake on the alts side.
func TestHandshakePlainTLSPeers(t *testing.T) {
	a, _ := hsPKIs(t)
	tests := []struct {
		name   string
		server bool // the alts side is the server
		peer   *tls.Config
		want   error // on the alts side, besides ErrHandshake
	}{
		{"tls13 client h2", true, &tls.Config{RootCAs: a.Pool, ServerName: "localhost", NextProtos: []string{"h2"}}, nil},
		{"tls13 client no ALPN", true, &tls.Config{RootCAs: a.Pool, ServerName: "localhost"}, ErrALPN},
		{"tls12 client", true, &tls.Config{RootCAs: a.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12, NextProtos: []string{ALPN}}, nil},
		{"tls13 server no ALPN", false, &tls.Config{Certificates: []tls.Certificate{a.Server}}, ErrALPN},
		{"tls12 server", false, &tls.Config{Certificates: []tls.Certificate{a.Server}, MaxVersion: tls.VersionTLS12, NextProtos: []string{ALPN}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, sc := testnet.TCPPair(t)
			cc.SetDeadline(time.Now().Add(hsTimeout))
			sc.SetDeadline(time.Now().Add(hsTimeout))
			peerErr := make(chan error, 1)
			var altsErr error
			if tt.server {
				go func() {
					tc := tls.Client(cc, tt.peer)
					err := tc.Handshake()
					if err == nil {
						// TLS 1.3 clients finish first; the
						// refusal arrives on the next read.
						_, err = tc.Read(make([]byte, 1))
					}
					peerErr <- err
				}()
				_, altsErr = Server(sc, a.ServerConfig(false))
			} else {
				go func() {
					tc := tls.Server(sc, tt.peer)
					err := tc.Handshake()
					if err == nil {
						_, err = tc.Read(make([]byte, 1))
					}
					peerErr <- err
				}()
				_, altsErr = Client(cc, hsClientConfig(a, false))
			}
			require.Error(t, altsErr)
			assert.ErrorIs(t, altsErr, ErrHandshake)
			if tt.want != nil {
				assert.ErrorIs(t, altsErr, tt.want)
			}
			assert.Error(t, <-peerErr, "the plain TLS peer must not see a working connection")
		})
	}
}

func TestHandshakeConfigRefusesTLS13(t *testing.T) {
	a, _ := hsPKIs(t)
	cc, _ := testnet.TCPPair(t)
	ccfg := hsClientConfig(a, false)
	ccfg.MaxVersion = tls.VersionTLS12
	_, err := Client(cc, ccfg)
	assert.ErrorIs(t, err, ErrHandshake)
	// Client closed the socket.
	_, err = cc.Write([]byte{1})
	assert.ErrorIs(t, err, net.ErrClosed)

	cc, _ = testnet.TCPPair(t)
	_, err = Client(cc, nil)
	assert.ErrorIs(t, err, ErrHandshake)
}

func TestHandshakeDeadlinesAndCancel(t *testing.T) {
	a, _ := hsPKIs(t)
	t.Run("conn deadline", func(t *testing.T) {
		cc, _ := testnet.TCPPair(t) // the server never answers
		cc.SetDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := Client(cc, hsClientConfig(a, false))
		assert.ErrorIs(t, err, ErrHandshake)
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
	t.Run("server conn deadline", func(t *testing.T) {
		_, sc := testnet.TCPPair(t) // the client never sends a hello
		sc.SetDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := Server(sc, a.ServerConfig(false))
		assert.ErrorIs(t, err, ErrHandshake)
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
	t.Run("context deadline", func(t *testing.T) {
		cc, _ := testnet.TCPPair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := ClientContext(ctx, cc, hsClientConfig(a, false))
		assert.ErrorIs(t, err, ErrHandshake)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("context cancel", func(t *testing.T) {
		_, sc := testnet.TCPPair(t)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := ServerContext(ctx, sc, a.ServerConfig(false))
		assert.ErrorIs(t, err, ErrHandshake)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("context done before", func(t *testing.T) {
		cc, _ := testnet.TCPPair(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := ClientContext(ctx, cc, hsClientConfig(a, false))
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("deadline cleared after success", func(t *testing.T) {
		cc, sc := testnet.TCPPair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ch := make(chan hsResult, 1)
		go func() {
			s, err := ServerContext(ctx, sc, a.ServerConfig(false))
			ch <- hsResult{s, err}
		}()
		c, err := ClientContext(ctx, cc, hsClientConfig(a, false))
		require.NoError(t, err)
		defer c.Close()
		s := <-ch
		require.NoError(t, s.err)
		defer s.conn.Close()
		cancel() // must not break the established connection
		hsEcho(t, c, s.conn)
	})
}

func TestHandshakePeerResetsMidway(t *testing.T) {
	a, _ := hsPKIs(t)
	cc, sc := testnet.TCPPair(t)
	go func() {
		// Read the ClientHello, then vanish.
		buf := make([]byte, 5)
		io.ReadFull(sc, buf)
		sc.SetLinger(0)
		sc.Close()
	}()
	cc.SetDeadline(time.Now().Add(hsTimeout))
	_, err := Client(cc, hsClientConfig(a, false))
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrHandshake)
}

func TestListenerSlowClientDoesNotBlockOthers(t *testing.T) {
	a, _ := hsPKIs(t)
	var hsErrs atomic.Int32
	lc := ListenConfig{
		HandshakeTimeout: 300 * time.Millisecond,
		HandshakeError:   func(net.Addr, error) { hsErrs.Add(1) },
	}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0", a.ServerConfig(false))
	require.NoError(t, err)
	defer ln.Close()

	// A client that connects and never speaks.
	silent, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer silent.Close()

	accepted := make(chan hsResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- hsResult{nil, err}
			return
		}
		accepted <- hsResult{c.(*Conn), nil}
	}()
	ccfg := hsClientConfig(a, false)
	ccfg.ServerName = "" // taken from the address by Dial
	c, err := Dial("tcp", ln.Addr().String(), ccfg)
	require.NoError(t, err)
	defer c.Close()
	select {
	case r := <-accepted:
		require.NoError(t, r.err)
		defer r.conn.Close()
		// Dial checked the certificate against the IP of the address.
		assert.Equal(t, "server", c.ConnectionState().PeerCertificates[0].Subject.CommonName)
		hsEcho(t, c, r.conn)
	case <-time.After(5 * time.Second):
		t.Fatal("Accept blocked by a silent client")
	}

	// The silent client's handshake times out and its socket is closed.
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = silent.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
	require.Eventually(t, func() bool { return hsErrs.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
}

func TestListenerClose(t *testing.T) {
	a, _ := hsPKIs(t)
	ln, err := Listen("tcp", "127.0.0.1:0", a.ServerConfig(false))
	require.NoError(t, err)

	// A handshake in progress and a blocked Accept, when Close comes.
	silent, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer silent.Close()
	acceptErr := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		acceptErr <- err
	}()
	testnet.WaitBlocked(t, "alts.(*listener).Accept")
	testnet.WaitParked(t, "alts.runHandshake") // the silent client's
	require.NoError(t, ln.Close())
	select {
	case err := <-acceptErr:
		assert.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Accept not unblocked by Close")
	}
	_, err = ln.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorIs(t, ln.Close(), net.ErrClosed)
	// The in-progress handshake was interrupted and its socket closed.
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = silent.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
	_, err = Dial("tcp", ln.Addr().String(), hsClientConfig(a, false))
	assert.Error(t, err)
}

func TestListenerClosesUnacceptedConns(t *testing.T) {
	a, _ := hsPKIs(t)
	ln := NewListener(hsListen(t), a.ServerConfig(false))
	c, err := Dial("tcp", ln.Addr().String(), hsClientConfig(a, false))
	require.NoError(t, err)
	defer c.Close()
	// The handshake completed but nobody calls Accept; Close must close
	// the handshaken connection rather than leak it.
	// (serve waits in a select only there; during the handshake it waits
	// on a channel receive.)
	require.Eventually(t, func() bool { return testnet.Parked("alts.(*listener).serve", "[select") }, 30*time.Second, time.Millisecond)
	require.NoError(t, ln.Close())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
}

func TestListenerManyClients(t *testing.T) {
	a, _ := hsPKIs(t)
	lc := ListenConfig{MaxHandshakes: 4}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0", a.ServerConfig(true))
	require.NoError(t, err)
	defer ln.Close()
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := Dial("tcp", ln.Addr().String(), hsClientConfig(a, true))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := fmt.Appendf(nil, "client %d", i)
			if _, err := c.Write(msg); err != nil {
				errs <- err
				return
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("echo %q, want %q", got, msg)
			}
		}()
	}
	for range n {
		c, err := ln.Accept()
		require.NoError(t, err)
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func hsListen(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ln
}
