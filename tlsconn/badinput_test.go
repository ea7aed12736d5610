package tlsconn

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
)

// inject seals a record of content type typ (for TLS 1.3 the inner type)
// with c's write key and writes it straight to the connection, bypassing
// Write's checks.
func inject(t testing.TB, c *Conn, typ byte, content []byte) {
	t.Helper()
	c.wmu.Lock()
	require.NoError(t, c.out.acquire(nil))
	defer c.wmu.Unlock()
	buf := make([]byte, len(content)+c.out.overhead())
	n, err := c.out.seal(buf, typ, content)
	require.NoError(t, err)
	_, err = c.conn.Write(buf[:n])
	require.NoError(t, err)
}

// rawWrite writes bytes to the connection under c.
func rawWrite(t testing.TB, c *Conn, b []byte) {
	t.Helper()
	_, err := c.conn.Write(b)
	require.NoError(t, err)
}

// maxPool is a pool that records the largest Get.
type maxPool struct {
	bufferpool.Pool
	mu  sync.Mutex
	max int
}

func (p *maxPool) Get(n int) *[]byte {
	p.mu.Lock()
	p.max = max(p.max, n)
	p.mu.Unlock()
	return p.Pool.Get(n)
}

// badPair returns a tlsconn pair; the server reads from pool.
func badPair(t *testing.T, version uint16, pool bufferpool.Pool) (client, server *Conn) {
	scfg := serverConfig(t)
	scfg.MaxVersion = version
	cn, sn := pairOf(t, ours, ours, clientConfig(t), scfg, WithPool(pool))
	return cn.(*Conn), sn.(*Conn)
}

// readErr reads from c once everything good has been read and returns the
// error, failing the test if any byte arrives.
func readErr(t *testing.T, c *Conn) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	p := make([]byte, 1<<16)
	n, err := c.Read(p)
	require.Zero(t, n, "bytes of a bad record were returned: %q", p[:n])
	require.Error(t, err)
	return err
}

// requireAlert checks that err is a local error carrying alert desc, that
// it is sticky, and that the peer received the alert.
func requireAlert(t *testing.T, err error, desc uint8, server, client *Conn) {
	t.Helper()
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "local error", oe.Op)
	assert.ErrorIs(t, err, tls.AlertError(desc), "got %v", err)
	// Sticky: the same error again, and writes fail too.
	assert.Equal(t, err, readErr(t, server))
	_, werr := server.Write([]byte("x"))
	assert.Error(t, werr)
	// The peer got the alert.
	client.SetReadDeadline(time.Now().Add(time.Minute))
	_, perr := client.Read(make([]byte, 10))
	assert.ErrorIs(t, perr, tls.AlertError(desc), "peer got %v", perr)
	var pe *net.OpError
	if assert.ErrorAs(t, perr, &pe) {
		assert.Equal(t, "remote error", pe.Op)
	}
}

func versions() []uint16 { return []uint16{tls.VersionTLS13, tls.VersionTLS12} }

// TestBadRecords feeds a tlsconn server records that must each end the
// connection with a clear error, no plaintext released, and the right
// alert sent.
func TestBadRecords(t *testing.T) {
	type tc struct {
		name  string
		only  uint16 // 0: both versions
		send  func(t *testing.T, c, s *Conn)
		alert uint8
	}
	cases := []tc{
		{name: "flipped ciphertext bit", alert: alertBadRecordMAC, send: func(t *testing.T, c, s *Conn) {
			c.wmu.Lock()
			require.NoError(t, c.out.acquire(nil))
			buf := make([]byte, 100+c.out.overhead())
			n, err := c.out.seal(buf, typeApplicationData, randBytes(100))
			c.wmu.Unlock()
			require.NoError(t, err)
			buf[n-20] ^= 0x10
			rawWrite(t, c, buf[:n])
		}},
		{name: "flipped tag bit", alert: alertBadRecordMAC, send: func(t *testing.T, c, s *Conn) {
			c.wmu.Lock()
			require.NoError(t, c.out.acquire(nil))
			buf := make([]byte, 100+c.out.overhead())
			n, _ := c.out.seal(buf, typeApplicationData, randBytes(100))
			c.wmu.Unlock()
			buf[n-1] ^= 1
			rawWrite(t, c, buf[:n])
		}},
		{name: "replayed record", alert: alertBadRecordMAC, send: func(t *testing.T, c, s *Conn) {
			c.wmu.Lock()
			require.NoError(t, c.out.acquire(nil))
			buf := make([]byte, 10+c.out.overhead())
			n, _ := c.out.seal(buf, typeApplicationData, []byte("0123456789"))
			c.wmu.Unlock()
			rawWrite(t, c, buf[:n])
			got := make([]byte, 10)
			_, err := io.ReadFull(s, got)
			require.NoError(t, err)
			rawWrite(t, c, buf[:n])
		}},
		{name: "record too short for a tag", alert: alertBadRecordMAC, send: func(t *testing.T, c, s *Conn) {
			rawWrite(t, c, []byte{typeApplicationData, 3, 3, 0, 4, 1, 2, 3, 4})
		}},
		{name: "change_cipher_spec after the handshake", alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			rawWrite(t, c, []byte{typeChangeCipherSpec, 3, 3, 0, 1, 1})
		}},
		{name: "plaintext alert record", only: tls.VersionTLS13, alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			rawWrite(t, c, []byte{typeAlert, 3, 3, 0, 2, 2, 40})
		}},
		{name: "unknown record type", alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			rawWrite(t, c, []byte{99, 3, 3, 0, 1, 0})
		}},
		{name: "wrong record version", alert: alertProtocolVersion, send: func(t *testing.T, c, s *Conn) {
			rawWrite(t, c, []byte{typeApplicationData, 3, 1, 0, 1, 0})
		}},
		{name: "record longer than allowed", alert: alertRecordOverflow, send: func(t *testing.T, c, s *Conn) {
			rawWrite(t, c, []byte{typeApplicationData, 3, 3, 0xff, 0xff})
		}},
		{name: "plaintext longer than 2^14", alert: alertRecordOverflow, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, typeApplicationData, make([]byte, maxPlaintext+1))
		}},
		{name: "unknown inner content type", only: tls.VersionTLS13, alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, 99, []byte("x"))
		}},
		{name: "inner plaintext of only padding", only: tls.VersionTLS13, alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, 0, make([]byte, 20))
		}},
		{name: "KeyUpdate with trailing data", only: tls.VersionTLS13, alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, typeHandshake, []byte{handshakeKeyUpdate, 0, 0, 1, 0, handshakeKeyUpdate, 0, 0, 1, 0})
		}},
		{name: "KeyUpdate with an invalid value", only: tls.VersionTLS13, alert: alertIllegalParameter, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, typeHandshake, []byte{handshakeKeyUpdate, 0, 0, 1, 2})
		}},
		{name: "KeyUpdate of the wrong length", only: tls.VersionTLS13, alert: alertDecodeError, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, typeHandshake, []byte{handshakeKeyUpdate, 0, 0, 2, 0, 0})
		}},
		{name: "NewSessionTicket to a server", only: tls.VersionTLS13, alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, typeHandshake, []byte{handshakeNewSessionTicket, 0, 0, 1, 0})
		}},
		{name: "ClientHello after the handshake", alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, typeHandshake, []byte{1, 0, 0, 1, 0})
		}},
		{name: "empty handshake record", alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, typeHandshake, nil)
		}},
		{name: "post-handshake message over 64 KiB", only: tls.VersionTLS13, alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, typeHandshake, []byte{handshakeKeyUpdate, 1, 0, 1})
		}},
		{name: "data interleaved with a fragmented handshake message", only: tls.VersionTLS13, alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, typeHandshake, []byte{handshakeKeyUpdate, 0})
			inject(t, c, typeApplicationData, []byte("data"))
		}},
		{name: "alert of the wrong length", alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			inject(t, c, typeAlert, []byte{2, 40, 0})
		}},
		{name: "too many empty records", alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			for range maxUselessRecords + 1 {
				inject(t, c, typeApplicationData, nil)
			}
		}},
		{name: "too many warning alerts", only: tls.VersionTLS12, alert: alertUnexpectedMessage, send: func(t *testing.T, c, s *Conn) {
			for range maxUselessRecords + 1 {
				inject(t, c, typeAlert, []byte{alertLevelWarning, 112})
			}
		}},
	}
	for _, c := range cases {
		for _, version := range versions() {
			if c.only != 0 && c.only != version {
				continue
			}
			t.Run(c.name+"/"+tls.VersionName(version), func(t *testing.T) {
				pool := &maxPool{Pool: bufferpool.NewTiered(bufferpool.WithDebug())}
				client, server := badPair(t, version, pool)
				// Good data first: it is delivered.
				transfer(t, client, server, []byte("good"), 4)
				c.send(t, client, server)
				err := readErr(t, server)
				requireAlert(t, err, c.alert, server, client)
				assert.Less(t, pool.max, 20<<10, "a buffer larger than any valid record was taken")
			})
		}
	}
}

// TestTruncated checks that a stream ending inside a record is
// io.ErrUnexpectedEOF, and one ending between records without a
// close_notify io.EOF, as crypto/tls reports.
func TestTruncated(t *testing.T) {
	for _, version := range versions() {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			for _, cut := range []int{1, 4, 5, 20} {
				client, server := badPair(t, version, bufferpool.NewTiered())
				c := client
				c.wmu.Lock()
				require.NoError(t, c.out.acquire(nil))
				buf := make([]byte, 100+c.out.overhead())
				n, _ := c.out.seal(buf, typeApplicationData, randBytes(100))
				c.wmu.Unlock()
				rawWrite(t, c, buf[:min(cut, n)])
				require.NoError(t, c.conn.(*net.TCPConn).CloseWrite())
				err := readErr(t, server)
				assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut after %d bytes", cut)
			}
			client, server := badPair(t, version, bufferpool.NewTiered())
			require.NoError(t, client.conn.(*net.TCPConn).CloseWrite())
			assert.Equal(t, io.EOF, readErr(t, server))
		})
	}
}

// TestRemoteAlerts checks that a fatal alert from the peer is returned as
// crypto/tls returns it, and that close_notify is io.EOF.
func TestRemoteAlerts(t *testing.T) {
	for _, version := range versions() {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			client, server := badPair(t, version, bufferpool.NewTiered())
			inject(t, client, typeAlert, []byte{alertLevelError, 40})
			err := readErr(t, server)
			var oe *net.OpError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, "remote error", oe.Op)
			assert.ErrorIs(t, err, tls.AlertError(40))
			assert.Equal(t, err, readErr(t, server), "sticky")

			client, server = badPair(t, version, bufferpool.NewTiered())
			// A warning (TLS 1.2) or user_canceled (TLS 1.3) is ignored.
			if version == tls.VersionTLS12 {
				inject(t, client, typeAlert, []byte{alertLevelWarning, 112})
			} else {
				inject(t, client, typeAlert, []byte{alertLevelWarning, alertUserCanceled})
			}
			transfer(t, client, server, []byte("after"), 5)
			inject(t, client, typeAlert, []byte{alertLevelWarning, alertCloseNotify})
			assert.Equal(t, io.EOF, readErr(t, server))
			assert.Equal(t, io.EOF, readErr(t, server))
		})
	}
}

// TestRenegotiationRefused checks that a TLS 1.2 client refuses a
// HelloRequest with no_renegotiation, as crypto/tls does by default.
func TestRenegotiationRefused(t *testing.T) {
	client, server := badPair(t, tls.VersionTLS12, bufferpool.NewTiered())
	inject(t, server, typeHandshake, []byte{handshakeHelloRequest, 0, 0, 0})
	err := readErr(t, client)
	assert.ErrorIs(t, err, tls.AlertError(alertNoRenegotiation))
	assert.True(t, errors.Is(readErr(t, client), tls.AlertError(alertNoRenegotiation)))
}

// TestSequenceExhausted checks that a sequence number never wraps: the
// last one is refused on both sides.
func TestSequenceExhausted(t *testing.T) {
	for _, version := range versions() {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			client, server := badPair(t, version, bufferpool.NewTiered())
			client.wmu.Lock()
			client.out.seq = ^uint64(0) - 1
			client.wmu.Unlock()
			server.rmu.Lock()
			server.in.seq = ^uint64(0) - 1
			server.rmu.Unlock()
			if version == tls.VersionTLS13 {
				saved := rekeyAfter
				rekeyAfter = ^uint64(0)
				defer func() { rekeyAfter = saved }()
			}
			transfer(t, client, server, []byte("last"), 4)
			_, err := client.Write([]byte("one more"))
			assert.ErrorIs(t, err, errSeqOverflow)
			_, err = client.Write([]byte("one more"))
			assert.Error(t, err)
			// A record sealed with the last number anyway is refused.
			rawWrite(t, client, append([]byte{typeApplicationData, 3, 3, 0, 40}, make([]byte, 40)...))
			assert.ErrorIs(t, readErr(t, server), errSeqOverflow)
		})
	}
}
