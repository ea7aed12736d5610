package readygrpc

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/keepalive"

	"github.com/readyconn/readyconn/internal/testnet"
)

// recorder keeps the connections a listener accepted or a dialer dialed:
// exactly the net.Conns gRPC was handed.
type recorder struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (r *recorder) add(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns = append(r.conns, c)
}

func (r *recorder) only(t *testing.T) net.Conn {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Len(t, r.conns, 1)
	return r.conns[0]
}

type recordingListener struct {
	net.Listener
	rec *recorder
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.rec.add(c)
	}
	return c, err
}

// tcpUserTimeout reads TCP_USER_TIMEOUT (milliseconds) from the socket
// under c.
func tcpUserTimeout(t *testing.T, c net.Conn) int {
	t.Helper()
	sc, ok := c.(syscall.Conn)
	require.True(t, ok, "%T has no socket", c)
	raw, err := sc.SyscallConn()
	require.NoError(t, err)
	var v int
	var serr error
	require.NoError(t, raw.Control(func(fd uintptr) {
		v, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}))
	require.NoError(t, serr)
	return v
}

// TestTCPUserTimeout checks that Listener and Dialer leave dead-peer
// detection as grpc-go sets it up on a bare socket: grpc-go sets
// TCP_USER_TIMEOUT to the keepalive timeout whenever keepalive is on (on a
// server by default: 20 s), but only on a *net.TCPConn it can see. Each
// case runs with a stock listener and dialer and with readygrpc's, and both
// must give the same value on the real socket.
func TestTCPUserTimeout(t *testing.T) {
	tests := []struct {
		name       string
		serverOpts []grpc.ServerOption
		dialOpts   []grpc.DialOption
		// Milliseconds grpc-go sets on a bare socket.
		wantServer, wantClient int
	}{
		{name: "default keepalive", wantServer: 20000, wantClient: 0},
		{
			name:       "keepalive configured",
			serverOpts: []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Hour, Timeout: 7 * time.Second})},
			dialOpts:   []grpc.DialOption{grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Hour, Timeout: 3 * time.Second})},
			wantServer: 7000, wantClient: 3000,
		},
	}
	stock := func(d *net.Dialer) func(context.Context, string) (net.Conn, error) {
		return func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	wrappers := []struct {
		name   string
		listen func(net.Listener) net.Listener
		dial   func(*net.Dialer) func(context.Context, string) (net.Conn, error)
	}{
		{"stock", func(l net.Listener) net.Listener { return l }, stock},
		{"readygrpc", Listener, func(d *net.Dialer) func(context.Context, string) (net.Conn, error) { return Dialer(d, "tcp") }},
	}
	for _, tt := range tests {
		for _, w := range wrappers {
			t.Run(tt.name+"/"+w.name, func(t *testing.T) {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				var srec, crec recorder
				srv := grpc.NewServer(tt.serverOpts...)
				testpb.RegisterTestServiceServer(srv, &testServer{})
				done := make(chan struct{})
				go func() { defer close(done); srv.Serve(recordingListener{w.listen(lis), &srec}) }()
				defer func() { srv.Stop(); <-done }()

				dial := w.dial(&net.Dialer{})
				opts := append([]grpc.DialOption{
					grpc.WithTransportCredentials(insecure.NewCredentials()),
					grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
						c, err := dial(ctx, addr)
						if err == nil {
							crec.add(c)
						}
						return c, err
					}),
				}, tt.dialOpts...)
				cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), opts...)
				require.NoError(t, err)
				defer cc.Close()
				// The first RPC returns after both transports were set up.
				ctx, cancel := context.WithTimeout(context.Background(), opBudget)
				defer cancel()
				_, err = testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{})
				require.NoError(t, err)

				assert.Equal(t, tt.wantServer, tcpUserTimeout(t, srec.only(t)), "server socket")
				assert.Equal(t, tt.wantClient, tcpUserTimeout(t, crec.only(t)), "client socket")
			})
		}
	}
}

// TestWrapConnLinux checks that on Linux, where grpc-go itself reads bare
// TCP and Unix sockets without pinning a buffer, WrapConn hands gRPC the
// socket untouched.
func TestWrapConnLinux(t *testing.T) {
	tc, ts := testnet.TCPPair(t)
	uc, us := testnet.UnixPair(t)
	for _, c := range []net.Conn{tc, ts, uc, us} {
		assert.Same(t, c, WrapConn(c), "%T", c)
	}

	lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	require.NoError(t, err)
	l := Listener(lis)
	defer l.Close()
	dc, err := Dialer(nil, "")(context.Background(), lis.Addr().String())
	require.NoError(t, err)
	defer dc.Close()
	sc, err := l.Accept()
	require.NoError(t, err)
	defer sc.Close()
	assert.IsType(t, &net.UnixConn{}, dc)
	assert.IsType(t, &net.UnixConn{}, sc)
}
