package alts

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/internal/testnet"
)

// TestHandshakeNoSessionTickets uses a client that would accept TLS 1.3
// session tickets (it has a ClientSessionCache): a ticket sent after the
// server's Finished would sit on the socket in front of the first ALTS
// frame and be read as a corrupt frame. The server must send none, and a
// second connection must not resume.
func TestHandshakeNoSessionTickets(t *testing.T) {
	a, _ := hsPKIs(t)
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		cc, sc := testnet.TCPPair(t)
		cc.SetDeadline(time.Now().Add(hsTimeout))
		sc.SetDeadline(time.Now().Add(hsTimeout))
		msg := []byte("first frame from the server")
		errc := make(chan error, 1)
		go func() {
			s, err := Server(sc, a.ServerConfig(false))
			if err != nil {
				errc <- err
				return
			}
			defer s.Close()
			_, err = s.Write(msg)
			errc <- err
		}()
		ccfg := hsClientConfig(a, false)
		ccfg.ClientSessionCache = cache
		c, err := Client(cc, ccfg)
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(c, got)
		require.NoError(t, err, "connection %d", i)
		require.NoError(t, <-errc)
		assert.True(t, bytes.Equal(msg, got))
		assert.False(t, c.ConnectionState().DidResume, "connection %d resumed", i)
		c.Close()
	}
}

// TestConnectionStateRevealsRecordKey pins down what the documentation of
// ConnectionState warns about: the exporter of the handshake state yields
// the record key, so a Conn keyed with it writes frames the peer accepts.
func TestConnectionStateRevealsRecordKey(t *testing.T) {
	a, _ := hsPKIs(t)
	c, s := hsPair(t, hsClientConfig(a, false), a.ServerConfig(false))
	require.NoError(t, c.err)
	require.NoError(t, s.err)
	st := s.conn.ConnectionState()
	key, err := st.ExportKeyingMaterial(ExporterLabel, []byte(AES128GCMRekey), rekeyKeySize)
	require.NoError(t, err)
	tap := &bufConn{}
	spy, err := NewConn(tap, ClientSide, AES128GCMRekey, key)
	require.NoError(t, err)
	_, err = spy.Write([]byte("secret"))
	require.NoError(t, err)
	_, err = c.conn.NetConn().Write(tap.written())
	require.NoError(t, err)
	got := make([]byte, 6)
	_, err = io.ReadFull(s.conn, got)
	require.NoError(t, err)
	assert.Equal(t, "secret", string(got))
}

func TestNewListenerNilConfigPanics(t *testing.T) {
	require.PanicsWithValue(t, "alts: NewListener with a nil *tls.Config", func() {
		NewListener(nil, nil)
	})
}

// TestHandshakePanicReachesCaller checks that a panic in a tls.Config
// callback, which runs on the handshake's own goroutine, is re-raised in the
// goroutine that called Client, and that the socket is closed.
func TestHandshakePanicReachesCaller(t *testing.T) {
	a, _ := hsPKIs(t)
	ccfg := hsClientConfig(a, false)
	ccfg.VerifyConnection = func(tls.ConnectionState) error { panic("boom") }
	c, s := testnet.TCPPair(t)
	srvDone := make(chan error, 1)
	go func() {
		_, err := Server(s, a.ServerConfig(false))
		srvDone <- err
	}()
	require.PanicsWithValue(t, "boom", func() { _, _ = Client(c, ccfg) })
	_, err := c.Write([]byte("x"))
	require.ErrorIs(t, err, net.ErrClosed, "the socket is closed after the panic")
	require.Error(t, <-srvDone)
}
