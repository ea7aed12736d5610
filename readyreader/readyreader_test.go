package readyreader_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testcert"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/rawconn"
	"github.com/readyconn/readyconn/readyreader"
)

func debugPool() *bufferpool.Tiered { return bufferpool.NewTiered(bufferpool.WithDebug()) }

// pair returns a connected (reader side, writer side) pair over loopback.
func pair(t testing.TB, network string) (net.Conn, net.Conn) {
	t.Helper()
	if network == "unix" {
		c, s := testnet.UnixPair(t)
		return s, c
	}
	c, s := testnet.TCPPair(t)
	return s, c
}

// sysConnWrapper embeds a socket and exposes its SyscallConn, as gRPC's
// credentials wrappers do, but its Read transforms the bytes.
type sysConnWrapper struct {
	*net.TCPConn
}

func (w sysConnWrapper) Read(p []byte) (int, error) {
	n, err := w.TCPConn.Read(p)
	for i := range p[:n] {
		p[i] ^= 0xff
	}
	return n, err
}

// fakeReader implements readyreader.Reader.
type fakeReader struct{}

func (fakeReader) ReadOnReady(int, bufferpool.Pool) (*[]byte, int, error) { return nil, 0, io.EOF }

func (fakeReader) Read([]byte) (int, error) { return 0, io.EOF }

func TestNewNonBlocking(t *testing.T) {
	tcpR, _ := pair(t, "tcp")
	unixR, _ := pair(t, "unix")
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer udp.Close()
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	tlsConn := tls.Client(tcpR, &tls.Config{})
	buffered := readyreader.NewBuffered(fakeReader{}, 0, nil)

	unix := runtime.GOOS != "windows" && runtime.GOOS != "plan9" && runtime.GOOS != "js" && runtime.GOOS != "wasip1"
	for _, tc := range []struct {
		name string
		r    io.Reader
		raw  bool // a rawconn-backed Reader (on Unix)
		self bool // r itself
	}{
		{name: "TCPConn", r: tcpR, raw: true},
		{name: "UnixConn", r: unixR, raw: true},
		{name: "UDPConn", r: udp, raw: true},
		{name: "tls.Conn", r: tlsConn},
		{name: "wrapper exposing SyscallConn", r: sysConnWrapper{tcpR.(*net.TCPConn)}},
		{name: "net.Pipe", r: p1},
		{name: "bytes.Reader", r: bytes.NewReader(nil)},
		{name: "os.File", r: os.Stdin},
		{name: "Reader", r: fakeReader{}, self: true},
		{name: "Buffered", r: buffered, self: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "wrapper exposing SyscallConn" {
				// The precondition that makes this case matter.
				var _ syscall.Conn = sysConnWrapper{}
			}
			got := readyreader.NewNonBlocking(tc.r)
			switch {
			case tc.self:
				require.Equal(t, tc.r, got)
			case tc.raw && unix:
				require.IsType(t, &rawconn.Reader{}, got)
			default:
				require.Nil(t, got)
			}
		})
	}
}

func TestNewIPConn(t *testing.T) {
	c, err := net.ListenIP("ip4:253", &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Skipf("raw IP socket not permitted: %v", err)
	}
	defer c.Close()
	got := readyreader.NewNonBlocking(c)
	if _, err := rawconn.New(c); errors.Is(err, errors.ErrUnsupported) {
		require.Nil(t, got)
	} else {
		require.IsType(t, &rawconn.Reader{}, got)
	}
}

// TestWrapperNeverRaw sends bytes through a wrapper whose Read transforms
// them: New must read through the wrapper, never the raw socket.
func TestWrapperNeverRaw(t *testing.T) {
	r, w := pair(t, "tcp")
	rd := readyreader.New(sysConnWrapper{r.(*net.TCPConn)})
	pool := debugPool()
	_, err := w.Write([]byte{0x00, 0x0f, 0xf0})
	require.NoError(t, err)
	got := readN(t, rd, 3, 64, pool)
	require.Equal(t, []byte{0xff, 0xf0, 0x0f}, got)
	require.Zero(t, pool.Stats().InUseBytes)
}

func readN(t *testing.T, rd readyreader.Reader, n, size int, pool bufferpool.Pool) []byte {
	t.Helper()
	var got []byte
	for len(got) < n {
		buf, m, err := rd.ReadOnReady(size, pool)
		if m > 0 {
			got = append(got, (*buf)[:m]...)
			pool.Put(buf)
		}
		require.NoError(t, err)
	}
	return got
}

func TestNetPipeFallback(t *testing.T) {
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	rd := readyreader.New(p1)
	require.Nil(t, readyreader.NewNonBlocking(p1))
	pool := debugPool()
	go func() {
		p2.Write([]byte("through the pipe"))
		p2.Close()
	}()
	require.Equal(t, "through the pipe", string(readN(t, rd, 16, 4, pool)))
	buf, n, err := rd.ReadOnReady(4, pool)
	require.Nil(t, buf)
	require.Zero(t, n)
	require.ErrorIs(t, err, io.EOF)
	require.Zero(t, pool.Stats().InUseBytes)
}

func TestTLSFallback(t *testing.T) {
	r, w := pair(t, "tcp")
	p, err := testcert.New("readyreader")
	require.NoError(t, err)
	ccfg := p.ClientConfig(false)
	ccfg.ServerName = "localhost"
	srv := tls.Server(r, p.ServerConfig(false))
	cli := tls.Client(w, ccfg)
	require.Nil(t, readyreader.NewNonBlocking(srv))
	rd := readyreader.New(srv)
	pool := debugPool()
	msg := bytes.Repeat([]byte("plaintext "), 5000)
	errc := make(chan error, 1)
	go func() {
		_, err := cli.Write(msg)
		if err == nil {
			err = cli.Close()
		}
		errc <- err
	}()
	got := readN(t, rd, len(msg), 1000, pool)
	require.Equal(t, msg, got)
	require.NoError(t, <-errc)
	require.Zero(t, pool.Stats().InUseBytes)
}

// scripted is an io.Reader returning a scripted sequence of results.
type scripted struct {
	steps []step
}

type step struct {
	data string
	n    int // if non-zero, the count to report instead of len(data)
	err  error
}

func (s *scripted) Read(p []byte) (int, error) {
	if len(s.steps) == 0 {
		return 0, io.EOF
	}
	st := s.steps[0]
	s.steps = s.steps[1:]
	n := copy(p, st.data)
	if st.n != 0 {
		n = st.n
	}
	return n, st.err
}

func TestBlockingFallback(t *testing.T) {
	boom := errors.New("boom")
	empties := make([]step, 100)
	for _, tc := range []struct {
		name    string
		steps   []step
		size    int
		want    string
		wantErr error
	}{
		{name: "data", steps: []step{{data: "abc"}}, size: 8, want: "abc"},
		{name: "data with EOF", steps: []step{{data: "abc", err: io.EOF}}, size: 8, want: "abc", wantErr: io.EOF},
		{name: "EOF", steps: nil, size: 8, wantErr: io.EOF},
		{name: "error", steps: []step{{err: boom}}, size: 8, wantErr: boom},
		{name: "empty reads then data", steps: append(empties[:99:99], step{data: "x"}), size: 8, want: "x"},
		{name: "only empty reads", steps: append(empties[:100:100], step{data: "x"}), size: 8, wantErr: io.ErrNoProgress},
		{name: "negative count", steps: []step{{n: -1}}, size: 8, wantErr: errors.New("invalid count")},
		{name: "count too large", steps: []step{{data: "a", n: 9}}, size: 8, wantErr: errors.New("invalid count")},
		{name: "zero size", steps: []step{{data: "abc"}}, size: 0, wantErr: readyreader.ErrInvalidSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := debugPool()
			rd := readyreader.New(&scripted{steps: tc.steps})
			buf, n, err := rd.ReadOnReady(tc.size, pool)
			if tc.want != "" {
				require.Equal(t, tc.want, string((*buf)[:n]))
				pool.Put(buf)
			} else {
				require.Nil(t, buf)
				require.Zero(t, n)
			}
			switch {
			case tc.wantErr == nil:
				require.NoError(t, err)
			case strings.Contains(tc.wantErr.Error(), "invalid count"):
				require.ErrorContains(t, err, "invalid count")
			default:
				require.ErrorIs(t, err, tc.wantErr)
			}
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

func TestRoundTripSockets(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			r, w := pair(t, network)
			rd := readyreader.New(r)
			pool := debugPool()
			msg := make([]byte, 100_000)
			rand.Read(msg)
			go func() {
				w.Write(msg)
				w.Close()
			}()
			require.Equal(t, msg, readN(t, rd, len(msg), 16*1024, pool))
			_, _, err := rd.ReadOnReady(16, pool)
			require.ErrorIs(t, err, io.EOF)
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}
