package benchmarks

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/readyconn/readyconn/alts"
	"github.com/readyconn/readyconn/benchmarks/internal/cputime"
	"github.com/readyconn/readyconn/internal/testcert"
	"github.com/readyconn/readyconn/internal/testnet"
)

var altsSizes = []struct {
	name string
	n    int
}{{"1K", 1 << 10}, {"16K", 16 << 10}, {"1M", 1 << 20}}

// altsKey returns a fresh key of n bytes: alts.NewConn takes a key for one
// connection only (it refuses a key it was given before for the same side,
// and clears the caller's copy).
func altsKey(n int) []byte {
	k := make([]byte, n)
	rand.Read(k)
	return k
}

// altsTLSPair returns a TLS 1.3 (AES-128-GCM) client and server over
// loopback TCP, with an ECDSA certificate from testcert.
func altsTLSPair(b *testing.B) (net.Conn, net.Conn) {
	p, err := testcert.New("bench")
	if err != nil {
		b.Fatal(err)
	}
	a, s := testnet.TCPPair(b)
	scfg := p.ServerConfig(false)
	scfg.MinVersion = tls.VersionTLS13
	ccfg := p.ClientConfig(false)
	ccfg.ServerName = "localhost"
	ccfg.MinVersion = tls.VersionTLS13
	srv := tls.Server(s, scfg)
	cli := tls.Client(a, ccfg)
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if cs := cli.ConnectionState(); cs.CipherSuite != tls.TLS_AES_128_GCM_SHA256 {
		b.Fatalf("TLS negotiated %s, want TLS_AES_128_GCM_SHA256", tls.CipherSuiteName(cs.CipherSuite))
	}
	return cli, srv
}

// altsPair returns an alts client and server over loopback TCP.
func altsPair(b *testing.B) (net.Conn, net.Conn) {
	a, s := testnet.TCPPair(b)
	key := altsKey(44)
	cli, err := alts.NewConn(a, alts.ClientSide, alts.AES128GCMRekey, bytes.Clone(key))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := alts.NewConn(s, alts.ServerSide, alts.AES128GCMRekey, key)
	if err != nil {
		b.Fatal(err)
	}
	return cli, srv
}

// BenchmarkSecureStream writes messages of each size from one end of a
// secure loopback connection and reads them at the other: alts (record
// protocol ALTSRP_GCM_AES128_REKEY, 16 KiB frames) against crypto/tls
// (TLS 1.3, AES-128-GCM).
func BenchmarkSecureStream(b *testing.B) {
	impls := []struct {
		name string
		pair func(*testing.B) (net.Conn, net.Conn)
	}{{"alts", altsPair}, {"tls", altsTLSPair}}
	for _, impl := range impls {
		for _, size := range altsSizes {
			b.Run("impl="+impl.name+"/size="+size.name, func(b *testing.B) {
				w, r := impl.pair(b)
				defer w.Close()
				defer r.Close()
				stream(b, w, r, size.n)
			})
		}
	}
}

// altsMemConn is an in-memory net.Conn: Write appends, Read consumes.
type altsMemConn struct {
	net.Conn // unused methods
	data     []byte
	off      int
}

func (m *altsMemConn) Write(p []byte) (int, error) {
	if m.off == len(m.data) {
		m.data, m.off = m.data[:0], 0
	}
	m.data = append(m.data, p...)
	return len(p), nil
}

func (m *altsMemConn) Read(p []byte) (int, error) {
	if m.off == len(m.data) {
		return 0, io.EOF
	}
	n := copy(p, m.data[m.off:])
	m.off += n
	return n, nil
}

func (m *altsMemConn) Close() error { return nil }

// BenchmarkSealOpen seals and opens one 16 KiB frame per op: through a pair
// of alts Conns over memory (framing, counters, key schedule, buffer pool
// included), against bare crypto/cipher AES-128-GCM Seal and Open on the same
// sizes, the physical limit on this CPU.
func BenchmarkSealOpen(b *testing.B) {
	const size = 16 << 10
	for _, protocol := range []string{alts.AES128GCM, alts.AES128GCMRekey} {
		name, keyLen := "impl=alts-gcm", 16
		if protocol == alts.AES128GCMRekey {
			name, keyLen = "impl=alts-rekey", 44
		}
		b.Run(name+"/size=16K", func(b *testing.B) {
			key := altsKey(keyLen)
			mem := &altsMemConn{}
			w, err := alts.NewConn(mem, alts.ClientSide, protocol, bytes.Clone(key), alts.WithMaxFrameSize(size+24))
			if err != nil {
				b.Fatal(err)
			}
			r, err := alts.NewConn(mem, alts.ServerSide, protocol, key)
			if err != nil {
				b.Fatal(err)
			}
			msg := make([]byte, size)
			buf := make([]byte, size)
			b.SetBytes(size)
			b.ReportAllocs()
			defer cputime.Start(b).Stop()
			for b.Loop() {
				if _, err := w.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// aesgcm is bare Seal+Open; aesgcm+copy adds the two 16 KiB copies that
	// the in-memory connection makes for the alts Conns (into it on Write,
	// out of it on Read), which a real socket makes too.
	for _, copies := range []bool{false, true} {
		name := "impl=aesgcm/size=16K"
		if copies {
			name = "impl=aesgcm+copy/size=16K"
		}
		b.Run(name, func(b *testing.B) {
			blk, err := aes.NewCipher(altsKey(16))
			if err != nil {
				b.Fatal(err)
			}
			g, err := cipher.NewGCM(blk)
			if err != nil {
				b.Fatal(err)
			}
			nonce := make([]byte, 12)
			msg := make([]byte, size)
			frame := make([]byte, 0, size+16)
			wire := make([]byte, size+16)
			buf := make([]byte, size)
			b.SetBytes(size)
			b.ReportAllocs()
			defer cputime.Start(b).Stop()
			for b.Loop() {
				nonce[0]++
				frame = g.Seal(frame[:0], nonce, msg, nil)
				ct := frame
				if copies {
					copy(wire, frame)
					copy(frame, wire)
				}
				if _, err := g.Open(buf[:0], nonce, ct, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// stream is the timed part of the streaming benchmarks: b.N writes of n
// bytes at w, from a goroutine of their own, each read back at r with a
// buffer of the same size.
func stream(b *testing.B, w io.Writer, r io.Reader, n int) {
	msg := make([]byte, n)
	buf := make([]byte, n)
	errc := make(chan error, 1)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	defer cputime.Start(b).Stop()
	go func() {
		for range b.N {
			if _, err := w.Write(msg); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for range b.N {
		if _, err := io.ReadFull(r, buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}
