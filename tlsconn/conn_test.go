package tlsconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
)

// TestIdleHoldsNothing proves the package's point: a reader parked in Read
// or ReadOnReady owns no pool buffer, after small messages and after 1 MiB
// ones, with crypto/tls or tlsconn at the other end.
func TestIdleHoldsNothing(t *testing.T) {
	for _, version := range versions() {
		for _, peerRole := range []peer{stdlib, ours} {
			for _, size := range []int{100, 1 << 20} {
				t.Run(tls.VersionName(version)+"/peer="+peerRole.String()+"/"+itoa(size), func(t *testing.T) {
					pool := bufferpool.NewTiered(bufferpool.WithDebug())
					scfg := serverConfig(t)
					scfg.MaxVersion = version
					cn, sn := pairOf(t, ours, peerRole, clientConfig(t), scfg, WithPool(pool))
					c := cn.(*Conn)
					data := randBytes(size)
					transfer(t, sn, c, data, 64<<10)
					transfer(t, c, sn, data, 64<<10)

					for _, read := range []string{"Read", "ReadOnReady"} {
						done := make(chan error, 1)
						go func() {
							if read == "Read" {
								p := make([]byte, 100)
								_, err := io.ReadFull(c, p)
								done <- err
								return
							}
							other := bufferpool.NewTiered()
							buf, n, err := c.ReadOnReady(32<<10, other)
							if n > 0 {
								other.Put(buf)
							}
							done <- err
						}()
						testnet.WaitParked(t, "tlsconn.(*Conn)."+read)
						require.Zero(t, pool.Stats().InUseBytes, "%s parked holding %+v", read, pool.Outstanding())
						_, err := sn.Write(make([]byte, 100))
						require.NoError(t, err)
						require.NoError(t, <-done)
					}
					require.Zero(t, pool.Stats().InUseBytes)
				})
			}
		}
	}
}

// TestIdleKeepsNoReference checks what TestIdleHoldsNothing cannot see
// through the pool's counters: that a parked reader keeps no reference into
// any buffer it gave back (an empty plaintext view did, after records were
// read in place), so that the garbage collector can free them all.
func TestIdleKeepsNoReference(t *testing.T) {
	for _, version := range versions() {
		for _, size := range []int{100, 1 << 20} {
			t.Run(tls.VersionName(version)+"/"+itoa(size), func(t *testing.T) {
				pool := &testnet.ForgetPool{}
				scfg := serverConfig(t)
				scfg.MaxVersion = version
				cn, sn := pairOf(t, ours, ours, clientConfig(t), scfg, WithPool(pool))
				c := cn.(*Conn)
				data := randBytes(size)
				transfer(t, sn, c, data, 64<<10)
				transfer(t, c, sn, data, 64<<10)
				done := make(chan error, 1)
				go func() {
					_, err := io.ReadFull(c, make([]byte, 100))
					done <- err
				}()
				testnet.WaitParked(t, "tlsconn.(*Conn).Read")
				require.Zero(t, pool.InUseBytes())
				pool.RequireUnreferenced(t)
				_, err := sn.Write(make([]byte, 100))
				require.NoError(t, err)
				require.NoError(t, <-done)
			})
		}
	}
}

// TestReadOnReadySizes checks that ReadOnReady takes from the caller's pool
// no more than the record needs, and never more than size.
func TestReadOnReadySizes(t *testing.T) {
	c, s := stackPair(t, tls.VersionTLS13)
	for _, tc := range []struct{ msg, size, max int }{
		{10, 32 << 10, 64}, // a 10-byte record: a 64-byte class, not 32 KiB
		{1000, 32 << 10, 1024},
		{16384, 32 << 10, 17 << 10},
		{16384, 100, 100}, // larger than size: delivered in pieces of size
	} {
		pool := &maxPool{Pool: bufferpool.NewTiered()}
		data := randBytes(tc.msg)
		go s.Write(data)
		var got []byte
		for len(got) < tc.msg {
			buf, n, err := c.ReadOnReady(tc.size, pool)
			require.NoError(t, err)
			require.LessOrEqual(t, n, tc.size)
			got = append(got, (*buf)[:n]...)
			pool.Put(buf)
		}
		assert.Equal(t, data, got)
		assert.LessOrEqual(t, pool.max, tc.max, "message %d, size %d", tc.msg, tc.size)
	}
	_, _, err := c.ReadOnReady(0, bufferpool.Default())
	assert.ErrorIs(t, err, errInvalidSize())
}

// TestClientCertificates runs mutual TLS with tlsconn at either end: the
// server sees the client's certificate.
func TestClientCertificates(t *testing.T) {
	for _, version := range versions() {
		for _, roles := range [][2]peer{{ours, stdlib}, {stdlib, ours}, {ours, ours}} {
			t.Run(tls.VersionName(version)+"/client="+roles[0].String()+"/server="+roles[1].String(), func(t *testing.T) {
				scfg := testPKI(t).ServerConfig(true)
				scfg.MaxVersion = version
				ccfg := testPKI(t).ClientConfig(true)
				ccfg.ServerName = "127.0.0.1"
				c, s := pairOf(t, roles[0], roles[1], ccfg, scfg)
				state := s.ConnectionState()
				require.Len(t, state.PeerCertificates, 1)
				assert.Equal(t, "client", state.PeerCertificates[0].Subject.CommonName)
				transfer(t, c, s, randBytes(5000), 1000)
				transfer(t, s, c, randBytes(5000), 1000)

				// Without a client certificate the handshake fails.
				ccfg = testPKI(t).ClientConfig(false)
				ccfg.ServerName = "127.0.0.1"
				cn, sn := testnet.TCPPair(t)
				var cc, sc conn
				if roles[0] == ours {
					cc = Client(cn, ccfg)
				} else {
					cc = tls.Client(cn, ccfg)
				}
				if roles[1] == ours {
					sc = Server(sn, scfg)
				} else {
					sc = tls.Server(sn, scfg)
				}
				errc := make(chan error, 1)
				go func() { errc <- sc.HandshakeContext(context.Background()); sc.Close() }()
				err := cc.HandshakeContext(context.Background())
				if err == nil {
					// TLS 1.3: the client learns on its first read.
					_, err = cc.Read(make([]byte, 1))
				}
				assert.Error(t, err)
				assert.Error(t, <-errc)
				cc.Close()
			})
		}
	}
}

// TestResumption checks session resumption with a tlsconn server (Go
// clients resume; tickets are shared between connections of one config)
// and with a tlsconn client that has a ClientSessionCache (the retired
// tls.Conn stores the tickets).
func TestResumption(t *testing.T) {
	for _, version := range versions() {
		for _, roles := range [][2]peer{{stdlib, ours}, {ours, stdlib}, {ours, ours}} {
			t.Run(tls.VersionName(version)+"/client="+roles[0].String()+"/server="+roles[1].String(), func(t *testing.T) {
				scfg := serverConfig(t)
				scfg.MaxVersion = version
				ccfg := clientConfig(t)
				ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
				for i := range 3 {
					c, s := pairOf(t, roles[0], roles[1], ccfg, scfg)
					// The ticket arrives with the first data.
					transfer(t, s, c, []byte("hello"), 5)
					transfer(t, c, s, []byte("world"), 5)
					assert.Equal(t, i > 0, c.ConnectionState().DidResume, "client, connection %d", i)
					assert.Equal(t, i > 0, s.ConnectionState().DidResume, "server, connection %d", i)
					for _, end := range []conn{c, s} {
						if tc, ok := end.(*Conn); ok {
							assert.False(t, tc.Pinning(), "%v", tc.PinningReason())
						}
					}
					c.Close()
					s.Close()
				}
			})
		}
	}
}

// TestDeadlines checks that a parked Read times out and can be retried,
// and that Close unblocks parked Reads and Writes with net.ErrClosed and
// gives back every buffer.
func TestDeadlines(t *testing.T) {
	for _, version := range versions() {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			pool := bufferpool.NewTiered(bufferpool.WithDebug())
			client, server := badPair(t, version, pool)
			require.NoError(t, server.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
			_, err := server.Read(make([]byte, 10))
			assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
			var ne net.Error
			require.ErrorAs(t, err, &ne)
			assert.True(t, ne.Timeout())
			require.NoError(t, server.SetReadDeadline(time.Time{}))
			transfer(t, client, server, []byte("after the timeout"), 100)

			// Close while a Read is parked.
			done := make(chan error, 1)
			go func() {
				_, err := server.Read(make([]byte, 10))
				done <- err
			}()
			testnet.WaitParked(t, "tlsconn.(*Conn).Read")
			require.NoError(t, server.Close())
			err = <-done
			assert.ErrorIs(t, err, net.ErrClosed)
			_, err = server.Read(make([]byte, 10))
			assert.ErrorIs(t, err, net.ErrClosed)
			_, err = server.Write([]byte("x"))
			assert.ErrorIs(t, err, net.ErrClosed)
			assert.ErrorIs(t, server.Close(), net.ErrClosed)
			assert.Zero(t, pool.Stats().InUseBytes)

			// Close while a Write is blocked on a full socket buffer.
			client, _ = badPair(t, version, pool)
			done = make(chan error, 1)
			go func() {
				var err error
				for err == nil {
					_, err = client.Write(make([]byte, 64<<10))
				}
				done <- err
			}()
			testnet.WaitBlocked(t, "tlsconn.(*Conn).Write")
			require.NoError(t, client.Close())
			assert.ErrorIs(t, <-done, net.ErrClosed)
		})
	}
}

// TestWriteTimeoutRecovers cuts writes short with deadlines while the peer
// (crypto/tls, which checks every record) is not reading, and checks that
// the peer receives exactly the committed bytes followed by everything
// written after the timeouts.
func TestWriteTimeoutRecovers(t *testing.T) {
	for _, version := range versions() {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			scfg := serverConfig(t)
			scfg.MaxVersion = version
			cn, sn := pairOf(t, ours, stdlib, clientConfig(t), scfg)
			c := cn.(*Conn)
			var sent bytes.Buffer
			timeouts := 0
			for i := 0; timeouts < 5 && i < 1000; i++ {
				data := randBytes(100 << 10)
				c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
				n, err := c.Write(data)
				sent.Write(data[:n])
				if err != nil {
					require.ErrorIs(t, err, os.ErrDeadlineExceeded)
					timeouts++
				}
			}
			require.Equal(t, 5, timeouts)
			// A past deadline commits nothing.
			c.SetWriteDeadline(time.Now().Add(-time.Second))
			n, err := c.Write([]byte("nothing"))
			assert.Zero(t, n)
			assert.ErrorIs(t, err, os.ErrDeadlineExceeded)

			c.SetWriteDeadline(time.Time{})
			tail := randBytes(1000)
			sent.Write(tail)
			errc := make(chan error, 1)
			go func() { _, err := c.Write(tail); errc <- err }()
			got := make([]byte, sent.Len())
			_, err = io.ReadFull(sn, got)
			require.NoError(t, err)
			require.NoError(t, <-errc)
			require.True(t, bytes.Equal(sent.Bytes(), got), "the peer received something other than the committed bytes")
		})
	}
}

// TestConcurrentReadWrite runs a reader and a writer on each end at once
// and checks every byte.
func TestConcurrentReadWrite(t *testing.T) {
	for _, version := range versions() {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			scfg := serverConfig(t)
			scfg.MaxVersion = version
			c, s := pairOf(t, ours, ours, clientConfig(t), scfg)
			a, b := randBytes(3<<20), randBytes(3<<20)
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); transfer(t, c, s, a, 7000) }()
			go func() { defer wg.Done(); transfer(t, s, c, b, 9000) }()
			wg.Wait()
		})
	}
}

// TestManySmallWrites sends thousands of small writes each way.
func TestManySmallWrites(t *testing.T) {
	for _, roles := range [][2]peer{{ours, stdlib}, {stdlib, ours}} {
		c, s := pairOf(t, roles[0], roles[1], clientConfig(t), serverConfig(t))
		data := randBytes(50000)
		transfer(t, c, s, data, 7)
		transfer(t, s, c, data, 13)
	}
}

// TestKeyUpdate starts key updates from tlsconn, asking crypto/tls to
// update too or not, and replaces the write key after a few records, while
// data flows both ways.
func TestKeyUpdate(t *testing.T) {
	for _, roles := range [][2]peer{{ours, stdlib}, {stdlib, ours}, {ours, ours}} {
		t.Run("client="+roles[0].String()+"/server="+roles[1].String(), func(t *testing.T) {
			c, s := pairOf(t, roles[0], roles[1], clientConfig(t), serverConfig(t))
			for i, end := range []conn{c, s} {
				tc, ok := end.(*Conn)
				if !ok {
					continue
				}
				peerEnd := []conn{s, c}[i]
				for _, requested := range []bool{false, true, true} {
					require.NoError(t, tc.keyUpdateNow(requested))
					transfer(t, tc, peerEnd, randBytes(30000), 5000)
					transfer(t, peerEnd, tc, randBytes(30000), 5000)
				}
			}
			saved := rekeyAfter
			rekeyAfter = 3
			defer func() { rekeyAfter = saved }()
			transfer(t, c, s, randBytes(1<<20), 64<<10)
			transfer(t, s, c, randBytes(1<<20), 64<<10)
		})
	}
}

// TestExportKeyingMaterial checks that the state's exporter works and
// agrees with the peer's.
func TestExportKeyingMaterial(t *testing.T) {
	for _, version := range versions() {
		scfg := serverConfig(t)
		scfg.MaxVersion = version
		c, s := pairOf(t, ours, stdlib, clientConfig(t), scfg)
		cs, ss := c.ConnectionState(), s.ConnectionState()
		a, err := cs.ExportKeyingMaterial("EXPERIMENTAL test", []byte("ctx"), 32)
		require.NoError(t, err)
		b, err := ss.ExportKeyingMaterial("EXPERIMENTAL test", []byte("ctx"), 32)
		require.NoError(t, err)
		assert.Equal(t, a, b)
	}
}

// TestKeyLogWriter checks that the caller's KeyLogWriter still receives
// every line, on both sides, and that configs are not modified.
func TestKeyLogWriter(t *testing.T) {
	for _, version := range versions() {
		var clog, slog bytes.Buffer
		scfg := serverConfig(t)
		scfg.MaxVersion = version
		scfg.KeyLogWriter = &slog
		ccfg := clientConfig(t)
		ccfg.KeyLogWriter = &clog
		c, s := pairOf(t, ours, ours, ccfg, scfg)
		transfer(t, c, s, []byte("x"), 1)
		want := "CLIENT_TRAFFIC_SECRET_0"
		if version == tls.VersionTLS12 {
			want = "CLIENT_RANDOM"
		}
		assert.Contains(t, clog.String(), want)
		assert.Contains(t, slog.String(), want)
		assert.Equal(t, &slog, scfg.KeyLogWriter)
		assert.Nil(t, scfg.GetConfigForClient)
	}
}

// TestHandshakeContext checks that the context reaches crypto/tls
// (ClientHelloInfo.Context) and that cancelling it interrupts a handshake.
func TestHandshakeContext(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "v")
	scfg := serverConfig(t)
	var seen any
	scfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		seen = hello.Context().Value(key{})
		return nil, nil
	}
	cn, sn := testnet.TCPPair(t)
	c, s := Client(cn, clientConfig(t)), Server(sn, scfg)
	errc := make(chan error, 1)
	go func() { errc <- s.HandshakeContext(ctx) }()
	require.NoError(t, c.Handshake())
	require.NoError(t, <-errc)
	assert.Equal(t, "v", seen)
	transfer(t, c, s, []byte("ok"), 2)

	// A peer that never answers: cancelling interrupts the handshake.
	cn, _ = testnet.TCPPair(t)
	c = Client(cn, clientConfig(t))
	cctx, cancel := context.WithCancel(context.Background())
	go func() { testnet.WaitBlocked(t, "crypto/tls.(*Conn).clientHandshake"); cancel() }()
	err := c.HandshakeContext(cctx)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, err, c.Handshake(), "a failed handshake fails for good")
	_, err = c.Read(make([]byte, 1))
	assert.Error(t, err)
}

// TestRenegotiationConfigPins checks that a TLS 1.2 client whose config
// allows renegotiation keeps crypto/tls carrying the data, which can
// renegotiate.
func TestRenegotiationConfigPins(t *testing.T) {
	scfg := serverConfig(t)
	scfg.MaxVersion = tls.VersionTLS12
	ccfg := clientConfig(t)
	ccfg.Renegotiation = tls.RenegotiateOnceAsClient
	c, s := pairOf(t, ours, stdlib, ccfg, scfg)
	assert.True(t, c.(*Conn).Pinning())
	assert.ErrorIs(t, c.(*Conn).PinningReason(), errHandoff)
	transfer(t, c, s, randBytes(10000), 1000)
	transfer(t, s, c, randBytes(10000), 1000)
}

// TestFIPSOnly runs a handshake in a child process under
// GODEBUG=fips140=only, where crypto/cipher refuses AES-GCM with
// caller-chosen nonces: the connection must work through crypto/tls and
// report Pinning.
func TestFIPSOnly(t *testing.T) {
	if os.Getenv("TLSCONN_FIPS_CHILD") == "1" {
		c, s := pairOf(t, ours, ours, clientConfig(t), serverConfig(t))
		transfer(t, c, s, randBytes(5000), 1000)
		transfer(t, s, c, randBytes(5000), 1000)
		for _, end := range []conn{c, s} {
			require.True(t, end.(*Conn).Pinning(), "under fips140=only the handoff must be refused")
		}
		return
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^TestFIPSOnly$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "TLSCONN_FIPS_CHILD=1", "GODEBUG=fips140=only")
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "fips140") && strings.Contains(string(out), "not supported") {
		t.Skipf("this toolchain cannot run fips140=only: %s", out)
	}
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "--- PASS: TestFIPSOnly")
}

// TestListener checks Listen, Dial, DialWithDialer, the Dialer type, and
// that Accept retries transient errors of the inner listener.
func TestListener(t *testing.T) {
	l, err := Listen("tcp", "127.0.0.1:0", serverConfig(t))
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, ok := c.(*Conn)
				if !ok {
					panic("Accept did not return a *Conn")
				}
				io.Copy(c, c)
			}()
		}
	}()
	cfg := testPKI(t).ClientConfig(false) // ServerName from the address
	c, err := Dial("tcp", l.Addr().String(), cfg)
	require.NoError(t, err)
	transfer(t, c, c, randBytes(100000), 10000)
	c.Close()
	c, err = DialWithDialer(&net.Dialer{Timeout: time.Minute}, "tcp", l.Addr().String(), cfg)
	require.NoError(t, err)
	transfer(t, c, c, []byte("echo"), 4)
	c.Close()
	d := &Dialer{Config: cfg}
	nc, err := d.DialContext(context.Background(), "tcp", l.Addr().String())
	require.NoError(t, err)
	transfer(t, nc, nc, []byte("echo"), 4)
	nc.Close()
	_, err = Listen("tcp", "127.0.0.1:0", &tls.Config{})
	assert.Error(t, err)
}

// flakyListener fails Accept with errs before passing through.
type flakyListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

func TestListenerRetries(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errors.New("too many open files"))}
	fl := &flakyListener{Listener: inner, errs: []error{emfile, emfile, emfile, errors.New("other")}}
	l := NewListener(fl, serverConfig(t))
	go func() {
		c, err := Dial("tcp", inner.Addr().String(), func() *tls.Config { c := clientConfig(t); return c }())
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := l.Accept()
	require.NoError(t, err, "Accept must retry transient errors")
	p := make([]byte, 2)
	_, err = io.ReadFull(c, p)
	require.NoError(t, err)
	c.Close()

	// Close interrupts an Accept that waits between retries, and Accept
	// then reports the closed listener.
	fl.mu.Lock()
	for range 100 {
		fl.errs = append(fl.errs, emfile)
	}
	fl.mu.Unlock()
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	testnet.WaitBlocked(t, "tlsconn.(*listener).Accept")
	require.NoError(t, l.Close())
	assert.Error(t, <-done)
	_, err = l.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
}

// TestIdleReleasesCipherState checks that a connection idle across a
// garbage collection keeps no AEAD (only its key), and rebuilds it when
// data flows again, in both directions, for the AES-GCM suites of both
// versions and ChaCha20-Poly1305.
func TestIdleReleasesCipherState(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint16
		suite   uint16
	}{
		{"TLS13_AES_128_GCM", tls.VersionTLS13, 0},
		{"TLS12_AES_128_GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{"TLS12_AES_256_GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{"TLS12_CHACHA20", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scfg := serverConfig(t)
			scfg.MaxVersion = tc.version
			ccfg := clientConfig(t)
			if tc.suite != 0 {
				ccfg.CipherSuites = []uint16{tc.suite}
			}
			cn, sn := pairOf(t, ours, ours, ccfg, scfg, WithChaCha20Poly1305(chacha20poly1305.New))
			c, s := cn.(*Conn), sn.(*Conn)
			for round := range 3 {
				transfer(t, c, s, randBytes(20000), 5000)
				transfer(t, s, c, randBytes(20000), 5000)
				// Both readers park with nothing buffered.
				done := make(chan error, 2)
				for _, end := range []*Conn{c, s} {
					go func() {
						_, err := end.Read(make([]byte, 1))
						done <- err
					}()
				}
				for range 2 {
					testnet.WaitParked(t, "tlsconn.(*Conn).Read")
				}
				for testnet.CountParked("tlsconn.(*Conn).Read", "[IO wait") < 2 {
					time.Sleep(time.Millisecond)
				}
				runtime.GC()
				runtime.GC()
				for _, end := range []*Conn{c, s} {
					assert.Nil(t, end.in.weak.Value(), "round %d: read AEAD kept while idle", round)
					assert.Nil(t, end.out.weak.Value(), "round %d: write AEAD kept while idle", round)
				}
				_, err := c.Write([]byte("x"))
				require.NoError(t, err)
				_, err = s.Write([]byte("y"))
				require.NoError(t, err)
				require.NoError(t, <-done)
				require.NoError(t, <-done)
			}
		})
	}
}

// recordingPool remembers the bytes of every buffer put back.
type recordingPool struct {
	bufferpool.Pool
	mu  sync.Mutex
	put [][]byte
}

func (p *recordingPool) Put(b *[]byte) {
	p.mu.Lock()
	p.put = append(p.put, bytes.Clone((*b)[:cap(*b)]))
	p.mu.Unlock()
	p.Pool.Put(b)
}

// cutConn accepts the first accept bytes written and then fails every
// Write with a timeout, as a socket does when a deadline cuts a write.
type cutConn struct {
	memConn
	accept int
	wrote  []byte
}

func (c *cutConn) Write(p []byte) (int, error) {
	n := min(c.accept, len(p))
	c.wrote = append(c.wrote, p[:n]...)
	c.accept -= n
	if n < len(p) {
		return n, &net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
	return n, nil
}

// TestUndoneRecordsCleared checks that the ciphertext of records a
// timed-out Write undid never goes back to the pool: their sequence numbers
// seal other plaintext next, so a pool user who also saw the wire would
// learn the XOR of two plaintexts. The write is cut 10 bytes into the
// second of three records: the first goes out, the second is completed
// later, the third is undone.
func TestUndoneRecordsCleared(t *testing.T) {
	for _, version := range versions() {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			pool := &recordingPool{Pool: bufferpool.NewTiered()}
			nc := &cutConn{}
			_, c := keyedPair(t, version, nc, pool)
			full := maxPlaintext + c.out.overhead()
			nc.accept = full + 10
			data := randBytes(3 * maxPlaintext)

			// What the undone third record seals to.
			c.wmu.Lock()
			require.NoError(t, c.out.acquire(nil))
			third := c.out
			third.seq += 2
			rec := make([]byte, full)
			_, err := third.seal(rec, typeApplicationData, data[2*maxPlaintext:])
			require.NoError(t, err)
			c.wmu.Unlock()

			n, err := c.Write(data)
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			assert.Equal(t, 2*maxPlaintext, n, "the cut record is committed, the undone one is not")
			c.Close() // gives the pending rest back
			pool.mu.Lock()
			defer pool.mu.Unlock()
			require.NotEmpty(t, pool.put)
			probe := rec[headerLen+100 : headerLen+164]
			for _, b := range pool.put {
				assert.False(t, bytes.Contains(b, probe), "ciphertext of an undone record went back to the pool")
			}
			assert.False(t, bytes.Contains(nc.wrote, probe))
		})
	}
}
