package tlsconn

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testcert"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/readyreader"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	pkiOnce sync.Once
	pkiVal  *testcert.PKI
)

// testPKI returns the certificates shared by the package's tests.
func testPKI(t testing.TB) *testcert.PKI {
	pkiOnce.Do(func() {
		p, err := testcert.New("tlsconn")
		if err != nil {
			panic(err)
		}
		pkiVal = p
	})
	return pkiVal
}

func serverConfig(t testing.TB) *tls.Config { return testPKI(t).ServerConfig(false) }

func clientConfig(t testing.TB) *tls.Config {
	cfg := testPKI(t).ClientConfig(false)
	cfg.ServerName = "127.0.0.1"
	return cfg
}

// conn is what the tests need of either end: a *Conn or a *tls.Conn.
type conn interface {
	net.Conn
	HandshakeContext(context.Context) error
	ConnectionState() tls.ConnectionState
}

// peer says which implementation runs an end.
type peer int

const (
	ours peer = iota
	stdlib
)

func (p peer) String() string {
	if p == ours {
		return "tlsconn"
	}
	return "crypto/tls"
}

// pairOf makes a client and a server over loopback TCP and runs both
// handshakes. opts apply to the tlsconn ends.
func pairOf(t testing.TB, cp, sp peer, ccfg, scfg *tls.Config, opts ...Option) (conn, conn) {
	t.Helper()
	cn, sn := testnet.TCPPair(t)
	var c, s conn
	if cp == ours {
		c = Client(cn, ccfg, opts...)
	} else {
		c = tls.Client(cn, ccfg)
	}
	if sp == ours {
		s = Server(sn, scfg, opts...)
	} else {
		s = tls.Server(sn, scfg)
	}
	handshakeBoth(t, c, s)
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

func handshakeBoth(t testing.TB, c, s conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.HandshakeContext(ctx) }()
	require.NoError(t, c.HandshakeContext(ctx), "client handshake")
	require.NoError(t, <-errc, "server handshake")
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// transfer writes data on w (in writes of at most chunk bytes) while r
// reads it all, and checks it arrived unchanged.
func transfer(t testing.TB, w, r net.Conn, data []byte, chunk int) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		for p := data; len(p) > 0; {
			n := min(len(p), chunk)
			if _, err := w.Write(p[:n]); err != nil {
				errc <- err
				return
			}
			p = p[n:]
		}
		errc <- nil
	}()
	got := make([]byte, len(data))
	_, err := io.ReadFull(r, got)
	require.NoError(t, err)
	require.NoError(t, <-errc)
	require.True(t, bytes.Equal(data, got), "data corrupted in transfer of %d bytes", len(data))
}

// countingPool is a debug pool whose InUseBytes the tests check.
func debugPool() *bufferpool.Tiered { return bufferpool.NewTiered(bufferpool.WithDebug()) }

// keyUpdateNow makes c send a KeyUpdate now, asking the peer to update too
// if requested. Tests use it to start key updates.
func (c *Conn) keyUpdateNow(requested bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writable(); err != nil {
		return err
	}
	var req byte
	if requested {
		req = 1
	}
	return c.sendKeyUpdateMsg(req)
}

func errInvalidSize() error { return readyreader.ErrInvalidSize }

// stackPair returns a handshaken tlsconn pair over TCP, with a few messages
// exchanged to warm up the pools and caches a long-lived process has warm.
func stackPair(t *testing.T, version uint16) (client, server *Conn) {
	scfg := serverConfig(t)
	scfg.MaxVersion = version
	c, s := pairOf(t, ours, ours, clientConfig(t), scfg)
	for range 3 {
		transfer(t, s, c, make([]byte, msgLen), msgLen)
	}
	return c.(*Conn), s.(*Conn)
}

const msgLen = 10
