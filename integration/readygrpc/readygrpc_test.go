//lint:file-ignore SA1019 TestCredentialsInfo checks the deprecated ProtocolInfo fields that credentials must still fill.

package readygrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/readyconn/readyconn/alts"
	"github.com/readyconn/readyconn/bufferpool"
)

func modes(t testing.TB) []mode {
	m := altsMode(t, true)
	m.name = "alts-mtls"
	return []mode{m, plainMode()}
}

func TestUnary(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.name, func(t *testing.T) {
			s := startServer(t, m)
			cc := dial(t, s.addr, m.client...)
			ctx := ctxT(t)
			hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			assert.Equal(t, healthpb.HealthCheckResponse_SERVING, hr.Status)

			tc := testpb.NewTestServiceClient(cc)
			for _, size := range []int32{0, 1, 1000, 16 << 10, 100 << 10, 4 << 20} {
				resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: size, Payload: payload(size), FillUsername: m.name == "alts-mtls"})
				require.NoError(t, err, "size %d", size)
				assert.Equal(t, payload(size).Body, resp.Payload.GetBody(), "size %d", size)
				if m.name == "alts-mtls" {
					assert.Equal(t, "client", resp.Username, "server sees the client certificate")
					assert.Equal(t, "spiffe://example.org/client", resp.OauthScope, "server sees the SPIFFE ID")
				}
			}
		})
	}
}

func TestStreaming(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.name, func(t *testing.T) {
			s := startServer(t, m)
			tc := testpb.NewTestServiceClient(dial(t, s.addr, m.client...))
			ctx := ctxT(t)
			sizes := []int32{1, 100, 64 << 10, 1 << 20, 4 << 20, 0, 31415}

			t.Run("server", func(t *testing.T) {
				req := &testpb.StreamingOutputCallRequest{}
				for _, n := range sizes {
					req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: n})
				}
				st, err := tc.StreamingOutputCall(ctx, req)
				require.NoError(t, err)
				for _, n := range sizes {
					resp, err := st.Recv()
					require.NoError(t, err)
					require.Equal(t, payload(n).Body, resp.Payload.GetBody())
				}
				_, err = st.Recv()
				assert.Equal(t, io.EOF, err)
			})
			t.Run("client", func(t *testing.T) {
				st, err := tc.StreamingInputCall(ctx)
				require.NoError(t, err)
				var total int32
				for _, n := range sizes {
					require.NoError(t, st.Send(&testpb.StreamingInputCallRequest{Payload: payload(n)}))
					total += n
				}
				resp, err := st.CloseAndRecv()
				require.NoError(t, err)
				assert.Equal(t, total, resp.AggregatedPayloadSize)
			})
			t.Run("bidi", func(t *testing.T) {
				st, err := tc.FullDuplexCall(ctx)
				require.NoError(t, err)
				for _, n := range sizes {
					require.NoError(t, st.Send(&testpb.StreamingOutputCallRequest{
						Payload:            payload(n),
						ResponseParameters: []*testpb.ResponseParameters{{Size: n / 2}},
					}))
					resp, err := st.Recv()
					require.NoError(t, err)
					require.Equal(t, payload(n).Body, resp.Payload.GetBody())
					resp, err = st.Recv()
					require.NoError(t, err)
					require.Equal(t, payload(n/2).Body, resp.Payload.GetBody())
				}
				require.NoError(t, st.CloseSend())
				_, err = st.Recv()
				assert.Equal(t, io.EOF, err)
			})
		})
	}
}

func TestConcurrentStreams(t *testing.T) {
	m := altsMode(t, false)
	s := startServer(t, m)
	tc := testpb.NewTestServiceClient(dial(t, s.addr, m.client...))
	ctx := ctxT(t)
	const streams = 200
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := tc.FullDuplexCall(ctx)
			if err != nil {
				errs <- err
				return
			}
			for j := range 5 {
				n := int32(i*13 + j*1000)
				if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: payload(n)}); err != nil {
					errs <- err
					return
				}
				resp, err := st.Recv()
				if err != nil {
					errs <- err
					return
				}
				if string(resp.Payload.GetBody()) != string(payload(n).Body) {
					errs <- fmt.Errorf("stream %d message %d corrupted", i, j)
					return
				}
			}
			if err := st.CloseSend(); err != nil {
				errs <- err
				return
			}
			if _, err := st.Recv(); err != io.EOF {
				errs <- fmt.Errorf("stream %d: end %v", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// readProbe installs testHookReadOnReady for the duration of a test. It
// counts the ReadOnReady calls gRPC makes, the calls in progress (readers
// parked waiting for data), and the buffers those calls in progress have
// taken from gRPC's pool.
type readProbe struct {
	calls, inFlight, heldInFlight atomic.Int64
}

type probePool struct {
	mem.BufferPool
	probe *readProbe
	gets  int64
}

func (p *probePool) Get(n int) *[]byte {
	p.gets++
	p.probe.heldInFlight.Add(1)
	return p.BufferPool.Get(n)
}

func installProbe(t *testing.T) *readProbe {
	rp := &readProbe{}
	hook := func(pool mem.BufferPool) (mem.BufferPool, func()) {
		rp.calls.Add(1)
		rp.inFlight.Add(1)
		pp := &probePool{BufferPool: pool, probe: rp}
		return pp, func() {
			rp.heldInFlight.Add(-pp.gets)
			rp.inFlight.Add(-1)
		}
	}
	require.True(t, testHookReadOnReady.CompareAndSwap(nil, &hook))
	t.Cleanup(func() { testHookReadOnReady.Store(nil) })
	return rp
}

// TestManyIdleConnections opens 500 connections, makes an RPC on each,
// leaves them idle, checks that no read buffer is held anywhere on their
// behalf, then uses them all again.
func TestManyIdleConnections(t *testing.T) {
	const conns = 500
	pool := bufferpool.NewTiered()
	a, _ := pkis(t)
	m := mode{
		name: "alts",
		server: func(t testing.TB, lis net.Listener) (net.Listener, grpc.ServerOption) {
			return lis, grpc.Creds(NewCredentials(a.ServerConfig(false), alts.WithPool(pool)))
		},
		client: []grpc.DialOption{grpc.WithTransportCredentials(NewCredentials(a.ClientConfig(false), alts.WithPool(pool)))},
	}
	for _, m := range []mode{m, plainMode()} {
		t.Run(m.name, func(t *testing.T) {
			probe := installProbe(t)
			s := startServer(t, m)
			ctx := ctxT(t)
			clients := make([]testpb.TestServiceClient, conns)
			for i := range clients {
				clients[i] = testpb.NewTestServiceClient(dial(t, s.addr, m.client...))
			}
			useAll := func(round int) {
				var wg sync.WaitGroup
				errs := make(chan error, conns)
				sem := make(chan struct{}, 32)
				for i, c := range clients {
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						n := int32(100 + i + round)
						resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: n, Payload: payload(n)})
						if err != nil {
							errs <- err
						} else if len(resp.Payload.GetBody()) != int(n) {
							errs <- errors.New("short response")
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
			}
			useAll(0)
			require.Positive(t, probe.calls.Load(), "gRPC never called ReadOnReady on the connection")

			// Idle: every connection has a client and a server reader
			// parked in ReadOnReady, and none of them holds a buffer.
			// gRPC may still send a late control frame (a window update,
			// a BDP ping) after the RPCs return, and the reader it wakes
			// holds a buffer for a moment; so wait for a quiet moment, and
			// fail if there is none: a buffer held while idle never lets
			// these counts reach zero.
			state := func() (parked, held, inUse int64) {
				if m.name == "alts" {
					inUse = pool.Stats().InUseBytes
				}
				return probe.inFlight.Load(), probe.heldInFlight.Load(), inUse
			}
			quiet := func() bool {
				parked, held, inUse := state()
				return parked >= 2*conns && held == 0 && inUse == 0
			}
			if !assert.Eventually(t, quiet, 10*time.Second, 10*time.Millisecond) {
				parked, held, inUse := state()
				t.Fatalf("never idle: %d readers parked (want %d), %d buffers from gRPC's pool held by parked readers, %d bytes of alts record buffers in use",
					parked, 2*conns, held, inUse)
			}
			if m.name == "alts" {
				assert.Positive(t, pool.Stats().Gets)
			}
			useAll(1)
		})
	}
}

func TestMutualTLSRequired(t *testing.T) {
	a, _ := pkis(t)
	s := startServer(t, altsMode(t, true))
	// A client without a certificate cannot make calls.
	cc := dial(t, s.addr, grpc.WithTransportCredentials(NewCredentials(a.ClientConfig(false))))
	ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
	defer cancel()
	_, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{})
	require.Error(t, err)
	assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
}

func TestWrongRootCA(t *testing.T) {
	_, b := pkis(t)
	s := startServer(t, altsMode(t, false))
	cc := dial(t, s.addr, grpc.WithTransportCredentials(NewCredentials(b.ClientConfig(false))))
	ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
	defer cancel()
	_, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{})
	require.Error(t, err)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Contains(t, err.Error(), "alts: handshake failed")
	assert.Contains(t, err.Error(), "certificate signed by unknown authority")
}

func TestPlainTLSPeers(t *testing.T) {
	a, _ := pkis(t)
	t.Run("grpc TLS client, readyconn server", func(t *testing.T) {
		s := startServer(t, altsMode(t, false))
		cc := dial(t, s.addr, grpc.WithTransportCredentials(credentials.NewTLS(a.ClientConfig(false))))
		ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
		defer cancel()
		_, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{})
		require.Error(t, err)
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Contains(t, err.Error(), "no application protocol")
	})
	t.Run("readyconn client, grpc TLS server", func(t *testing.T) {
		s := startServer(t, tlsMode(t))
		cc := dial(t, s.addr, altsMode(t, false).client...)
		ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
		defer cancel()
		_, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{})
		require.Error(t, err)
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Contains(t, err.Error(), "alts: handshake failed")
	})
	t.Run("plaintext client, readyconn server", func(t *testing.T) {
		s := startServer(t, altsMode(t, false))
		cc := dial(t, s.addr, plainMode().client...)
		ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
		defer cancel()
		_, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{})
		require.Error(t, err)
		assert.Equal(t, codes.Unavailable, status.Code(err))
	})
}

func TestGracefulStop(t *testing.T) {
	m := altsMode(t, false)
	s := startServer(t, m)
	tc := testpb.NewTestServiceClient(dial(t, s.addr, m.client...))
	ctx := ctxT(t)
	st, err := tc.FullDuplexCall(ctx)
	require.NoError(t, err)
	require.NoError(t, st.Send(&testpb.StreamingOutputCallRequest{Payload: payload(10)}))
	_, err = st.Recv()
	require.NoError(t, err)

	stopped := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(stopped)
	}()
	// The stream in progress keeps working.
	time.Sleep(50 * time.Millisecond)
	select {
	case <-stopped:
		t.Fatal("GracefulStop returned while a stream was open")
	default:
	}
	require.NoError(t, st.Send(&testpb.StreamingOutputCallRequest{Payload: payload(1 << 20)}))
	resp, err := st.Recv()
	require.NoError(t, err)
	assert.Equal(t, payload(1<<20).Body, resp.Payload.GetBody())
	require.NoError(t, st.CloseSend())
	_, err = st.Recv()
	assert.Equal(t, io.EOF, err)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("GracefulStop did not return after the last stream ended")
	}
	// New calls fail.
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = tc.EmptyCall(cctx, &testpb.Empty{})
	assert.Error(t, err)
}

func TestDeadlinesAndCancellation(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.name, func(t *testing.T) {
			s := startServer(t, m)
			tc := testpb.NewTestServiceClient(dial(t, s.addr, m.client...))
			ctx := ctxT(t)
			// Make sure the connection is up.
			_, err := tc.EmptyCall(ctx, &testpb.Empty{})
			require.NoError(t, err)

			dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			_, err = tc.UnaryCall(dctx, &testpb.SimpleRequest{ResponseSize: -1})
			cancel()
			assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
			select {
			case err := <-s.impl.canceled:
				// The server's own timer or the client's
				// RST_STREAM, whichever comes first.
				assert.Error(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("server handler did not see the deadline")
			}

			cctx, cancel := context.WithCancel(ctx)
			st, err := tc.StreamingOutputCall(cctx, &testpb.StreamingOutputCallRequest{
				ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 10, IntervalUs: 20e6}},
			})
			require.NoError(t, err)
			_, err = st.Recv()
			require.NoError(t, err)
			cancel()
			_, err = st.Recv()
			assert.Equal(t, codes.Canceled, status.Code(err))
			select {
			case err := <-s.impl.canceled:
				assert.ErrorIs(t, err, context.Canceled)
			case <-time.After(10 * time.Second):
				t.Fatal("server handler did not see the cancellation")
			}
			// The connection is still fine.
			_, err = tc.EmptyCall(ctx, &testpb.Empty{})
			require.NoError(t, err)
		})
	}
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grpc.sock")
	lis, err := net.Listen("unix", path)
	require.NoError(t, err)
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &testServer{})
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(Listener(lis)) }()
	defer func() { srv.Stop(); <-done }()

	probe := installProbe(t)
	cc, err := grpc.NewClient("unix://"+path, plainMode().client...)
	require.NoError(t, err)
	defer cc.Close()
	resp, err := testpb.NewTestServiceClient(cc).UnaryCall(ctxT(t), &testpb.SimpleRequest{ResponseSize: 1000})
	require.NoError(t, err)
	assert.Len(t, resp.Payload.GetBody(), 1000)
	// Where readyreader supports the socket (every Unix), gRPC read
	// through ReadOnReady on both ends.
	uc, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer uc.Close()
	if WrapConn(uc) != uc {
		assert.Positive(t, probe.calls.Load())
	}
}

func TestWrapConn(t *testing.T) {
	// net.Pipe has no socket: returned unchanged.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	assert.Same(t, a, WrapConn(a))

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer lis.Close()
	l := Listener(lis)
	dc, err := Dialer(nil, "tcp")(ctxT(t), lis.Addr().String())
	require.NoError(t, err)
	defer dc.Close()
	sc, err := l.Accept()
	require.NoError(t, err)
	defer sc.Close()
	if _, ok := dc.(*plainConn); !ok {
		t.Skip("readyreader cannot wait for readability on sockets on " + runtime.GOOS)
	}
	for _, c := range []net.Conn{dc, sc} {
		_, ok := c.(interface {
			ReadOnReady(int, mem.BufferPool) (*[]byte, int, error)
		})
		require.True(t, ok, "%T has no ReadOnReady", c)
		sc, ok := c.(syscall.Conn)
		require.True(t, ok, "%T has no SyscallConn", c)
		_, err := sc.SyscallConn()
		require.NoError(t, err)
	}
	_, err = dc.Write([]byte("hello"))
	require.NoError(t, err)
	pool := bufferpool.NewTiered()
	buf, n, err := sc.(interface {
		ReadOnReady(int, mem.BufferPool) (*[]byte, int, error)
	}).ReadOnReady(64, pool)
	require.NoError(t, err)
	assert.Equal(t, "hello", string((*buf)[:n]))
	pool.Put(buf)
	assert.Zero(t, pool.Stats().InUseBytes)
}

func TestCredentialsInfo(t *testing.T) {
	a, _ := pkis(t)
	cfg := a.ClientConfig(false)
	cfg.ServerName = "example.com"
	c := NewCredentials(cfg)
	info := c.Info()
	assert.Equal(t, SecurityProtocol, info.SecurityProtocol)
	assert.Equal(t, "1.3", info.SecurityVersion)
	assert.Equal(t, "example.com", info.ServerName)
	cfg.ServerName = "changed"
	assert.Equal(t, "example.com", c.Info().ServerName, "NewCredentials clones cfg")

	c2 := c.Clone()
	require.NoError(t, c2.OverrideServerName("other"))
	assert.Equal(t, "other", c2.Info().ServerName)
	assert.Equal(t, "example.com", c.Info().ServerName, "Clone is independent")
}

// TestServerNameFromAuthority checks that the server certificate is checked
// against the authority: a server certificate for "localhost" is accepted
// when dialing localhost and refused under another authority.
func TestServerNameFromAuthority(t *testing.T) {
	m := altsMode(t, false)
	s := startServer(t, m)
	_, port, err := net.SplitHostPort(s.addr)
	require.NoError(t, err)
	ctx := ctxT(t)

	cc := dial(t, s.addr, append(m.client, grpc.WithAuthority("localhost:"+port))...)
	_, err = testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{})
	require.NoError(t, err)

	cc = dial(t, s.addr, append(m.client, grpc.WithAuthority("evil.example:"+port))...)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = testpb.NewTestServiceClient(cc).EmptyCall(cctx, &testpb.Empty{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "evil.example")
}
