package testcert_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/readyconn/readyconn/internal/testcert"
	"github.com/readyconn/readyconn/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// handshake runs a TLS handshake over loopback TCP and returns the
// client's and the server's error.
func handshake(t *testing.T, ccfg, scfg *tls.Config) (cerr, serr error) {
	c, s := testnet.TCPPair(t)
	deadline := time.Now().Add(10 * time.Second)
	c.SetDeadline(deadline)
	s.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		tc := tls.Server(s, scfg)
		err := tc.Handshake()
		if err == nil {
			// A TLS 1.3 server learns of a bad client certificate late.
			_, err = tc.Read(make([]byte, 1))
		}
		s.Close()
		done <- err
	}()
	tc := tls.Client(c, ccfg)
	cerr = tc.Handshake()
	if cerr == nil {
		_, cerr = tc.Write([]byte{1})
	}
	return cerr, <-done
}

func TestHandshake(t *testing.T) {
	a, err := testcert.New("A")
	require.NoError(t, err)
	b, err := testcert.New("B")
	require.NoError(t, err)

	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		ccfg := a.ClientConfig(false)
		ccfg.ServerName = name
		cerr, serr := handshake(t, ccfg, a.ServerConfig(false))
		require.NoError(t, cerr, name)
		require.NoError(t, serr, name)
	}

	t.Run("mutual", func(t *testing.T) {
		ccfg := a.ClientConfig(true)
		ccfg.ServerName = "localhost"
		scfg := a.ServerConfig(true)
		var peer string
		var uri string
		scfg.VerifyConnection = func(cs tls.ConnectionState) error {
			peer = cs.PeerCertificates[0].Subject.CommonName
			uri = cs.PeerCertificates[0].URIs[0].String()
			return nil
		}
		cerr, serr := handshake(t, ccfg, scfg)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		require.Equal(t, "client", peer)
		require.Equal(t, testcert.ClientURI, uri)
	})

	t.Run("no client certificate", func(t *testing.T) {
		ccfg := a.ClientConfig(false)
		ccfg.ServerName = "localhost"
		_, serr := handshake(t, ccfg, a.ServerConfig(true))
		require.Error(t, serr)
	})

	t.Run("other CA", func(t *testing.T) {
		ccfg := b.ClientConfig(false)
		ccfg.ServerName = "localhost"
		cerr, _ := handshake(t, ccfg, a.ServerConfig(false))
		require.Error(t, cerr)
	})

	t.Run("wrong name", func(t *testing.T) {
		ccfg := a.ClientConfig(false)
		ccfg.ServerName = "example.com"
		cerr, _ := handshake(t, ccfg, a.ServerConfig(false))
		require.Error(t, cerr)
	})
}

func TestWritePEM(t *testing.T) {
	p, err := testcert.New("pem")
	require.NoError(t, err)
	f, err := p.WritePEM(t.TempDir())
	require.NoError(t, err)
	for _, pair := range [][2]string{{f.ServerCert, f.ServerKey}, {f.ServerRSACert, f.ServerRSAKey}, {f.ClientCert, f.ClientKey}} {
		cert, err := tls.LoadX509KeyPair(pair[0], pair[1])
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		require.NoError(t, err)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: p.Pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		require.NoError(t, err)
	}
	ca, err := os.ReadFile(f.CA)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca))
}
