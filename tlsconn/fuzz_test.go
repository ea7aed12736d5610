package tlsconn

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/readyconn/readyconn/bufferpool"
)

// memConn is a net.Conn over a byte slice: Read returns the bytes in chunks
// of the given sizes (then io.EOF), Write discards. It is not a socket, so
// a Conn reads it through readyreader's blocking fallback.
type memConn struct {
	data   []byte
	chunks []byte
}

func (m *memConn) Read(p []byte) (int, error) {
	if len(m.data) == 0 {
		return 0, io.EOF
	}
	n := len(m.data)
	if len(m.chunks) > 0 {
		n = int(m.chunks[0]) + 1
		m.chunks = m.chunks[1:]
	}
	n = copy(p, m.data[:min(n, len(m.data))])
	m.data = m.data[n:]
	return n, nil
}

func (m *memConn) Write(p []byte) (int, error)        { return len(p), nil }
func (m *memConn) Close() error                       { return nil }
func (m *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (m *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (m *memConn) SetDeadline(t time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(t time.Time) error { return nil }

// keyedPair returns a sealing halfConn and a Conn (the server of version)
// reading nc, keyed with the same secret, as if a handshake had run.
func keyedPair(t testing.TB, version uint16, nc net.Conn, pool bufferpool.Pool) (*halfConn, *Conn) {
	var s *suite
	if version == tls.VersionTLS13 {
		s = suiteByID(tls.TLS_AES_128_GCM_SHA256, version)
	} else {
		s = suiteByID(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, version)
	}
	secret := sha256.Sum256([]byte("fuzz"))
	var w halfConn
	c := newConn(nc, nil, false, []Option{WithPool(pool)})
	if s.tls13 {
		if err := w.setTrafficSecret(s, secret[:], nil); err != nil {
			t.Fatal(err)
		}
		if err := c.in.setTrafficSecret(s, secret[:], nil); err != nil {
			t.Fatal(err)
		}
		c.out = c.in
	} else {
		key, iv := secret[:16], secret[16:20]
		if err := w.set12(s, key, iv, 1, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.in.set12(s, key, iv, 1, nil); err != nil {
			t.Fatal(err)
		}
		c.out = c.in
	}
	c.rd.Init(nc, pool, formatFor(s))
	c.hsDone.Store(true)
	return &w, c
}

// FuzzRecords feeds a Conn a stream of validly sealed records of any
// content type and content (application data, handshake messages, alerts,
// padding), optionally damaged at one position, in reads of any size. The
// Conn must never panic, and what it delivers must be in order a prefix of
// the application data that was sealed before the damage: no byte of a
// damaged record, no reordering, nothing after an error. Without damage,
// and with application data alone, it must deliver everything. Every pool
// buffer goes back.
func FuzzRecords(f *testing.F) {
	f.Add(byte(0), []byte{0, 5, 'h', 'e', 'l', 'l', 'o', 0, 3, 'a', 'b', 'c'}, []byte{}, uint16(0), byte(0))
	f.Add(byte(1), []byte{0, 5, 'h', 'e', 'l', 'l', 'o', 2, 5, 24, 0, 0, 1, 1, 0, 2, 'o', 'k'}, []byte{3, 7}, uint16(0), byte(0))
	f.Add(byte(0), []byte{0, 5, 'h', 'e', 'l', 'l', 'o', 1, 2, 1, 0}, []byte{}, uint16(9), byte(4))
	f.Add(byte(0), []byte{2, 4, 4, 0, 0, 4, 2, 3, 1, 2, 3, 4, 0, 1, 'x'}, []byte{1}, uint16(0), byte(0))
	f.Fuzz(func(t *testing.T, mode byte, script, chunks []byte, damageAt uint16, damage byte) {
		version := uint16(tls.VersionTLS13)
		if mode&1 == 1 {
			version = tls.VersionTLS12
		}
		pool := bufferpool.NewTiered(bufferpool.WithDebug())
		nc := &memConn{chunks: chunks}
		w, c := keyedPair(t, version, nc, pool)
		c.isClient = mode&2 == 2

		// script: records of [kind][length][content...].
		var stream, want []byte
		onlyData := true
		for len(script) >= 2 {
			kind, n := script[0], int(script[1])
			script = script[2:]
			content := script[:min(n, len(script))]
			script = script[len(content):]
			var typ byte
			switch kind % 4 {
			case 0:
				typ = typeApplicationData
			case 1:
				typ = typeAlert
			case 2:
				typ = typeHandshake
			default:
				typ = kind // anything else, including invalid types
			}
			if typ != typeApplicationData {
				onlyData = false
			}
			rec := make([]byte, len(content)+w.overhead())
			k, err := w.seal(rec, typ, content)
			if err != nil {
				t.Fatal(err)
			}
			if typ == typeApplicationData && (damage == 0 || len(stream)+k <= int(damageAt)) {
				want = append(want, content...)
			}
			stream = append(stream, rec[:k]...)
		}
		if damage != 0 && int(damageAt) < len(stream) {
			if damage&0x80 != 0 {
				stream = stream[:damageAt] // truncated
			} else {
				stream[damageAt] ^= damage
			}
		} else {
			damage = 0
		}
		nc.data = stream

		var got []byte
		buf := make([]byte, 100)
		var err error
		for err == nil {
			var n int
			if mode&4 == 0 {
				n, err = c.Read(buf)
				got = append(got, buf[:n]...)
			} else {
				var b *[]byte
				b, n, err = c.ReadOnReady(1+int(mode>>3), pool)
				if n > 0 {
					got = append(got, (*b)[:n]...)
					pool.Put(b)
				}
			}
			if n == 0 && err == nil {
				t.Fatal("Read returned 0, nil")
			}
		}
		if !bytes.HasPrefix(want, got) {
			t.Fatalf("delivered %q, which is not a prefix of the sealed data %q", got, want)
		}
		if onlyData && damage == 0 && (!bytes.Equal(got, want) || err != io.EOF) {
			t.Fatalf("delivered %q with %v, want all of %q and io.EOF", got, err, want)
		}
		_, err2 := c.Read(buf)
		if err2 == nil || (!errors.Is(err2, err) && err2 != err && err != io.EOF) {
			t.Fatalf("error not sticky: %v then %v", err, err2)
		}
		c.Close()
		if n := pool.Stats().InUseBytes; n != 0 {
			t.Fatalf("%d bytes not returned to the pool: %+v", n, pool.Outstanding())
		}
	})
}
