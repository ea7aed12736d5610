//lint:file-ignore SA1019 TestCredentialsInfo checks the deprecated ProtocolInfo fields that credentials must still fill.

package readygrpc

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
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
	"github.com/readyconn/readyconn/internal/israce"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/tlsconn"
)

// TestUnary checks the health service and unary calls of 0 B to 4 MiB each
// way, and with mutual TLS that the handler sees the client's identity
// (certificate and SPIFFE ID).
func TestUnary(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.name, func(t *testing.T) {
			s := startServer(t, m)
			cc := dial(t, s.addr, m.client...)
			hr, err := healthpb.NewHealthClient(cc).Check(opCtx(t), &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			assert.Equal(t, healthpb.HealthCheckResponse_SERVING, hr.Status)

			tc := testpb.NewTestServiceClient(cc)
			for _, size := range []int32{0, 1, 1000, 16 << 10, 100 << 10, 4 << 20} {
				resp, err := tc.UnaryCall(opCtx(t), &testpb.SimpleRequest{ResponseSize: size, Payload: payload(size), FillUsername: m.mutual})
				require.NoError(t, err, "size %d", size)
				assert.Equal(t, payload(size).Body, resp.Payload.GetBody(), "size %d", size)
				if m.mutual {
					assert.Equal(t, "client", resp.Username, "server sees the client certificate")
					assert.Equal(t, "spiffe://example.org/client", resp.OauthScope, "server sees the SPIFFE ID")
				}
			}
		})
	}
}

// TestStreaming runs server, client and bidirectional streams with
// messages of 1 B to 4 MiB.
func TestStreaming(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.name, func(t *testing.T) {
			s := startServer(t, m)
			tc := testpb.NewTestServiceClient(dial(t, s.addr, m.client...))
			sizes := []int32{1, 100, 64 << 10, 1 << 20, 4 << 20, 0, 31415}

			t.Run("server", func(t *testing.T) {
				req := &testpb.StreamingOutputCallRequest{}
				for _, n := range sizes {
					req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: n})
				}
				st, err := tc.StreamingOutputCall(opCtx(t), req)
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
				st, err := tc.StreamingInputCall(opCtx(t))
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
				st, err := tc.FullDuplexCall(opCtx(t))
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

// TestConcurrentStreams runs 200 bidirectional streams at once on one
// connection.
func TestConcurrentStreams(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.name, func(t *testing.T) { testConcurrentStreams(t, m) })
	}
}

func testConcurrentStreams(t *testing.T, m mode) {
	s := startServer(t, m)
	tc := testpb.NewTestServiceClient(dial(t, s.addr, m.client...))
	const streams = 200
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), opBudget)
			defer cancel()
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

// tlsReadsOnReady says whether NewTLS hands gRPC connections that gRPC
// reads through ReadOnReady without pinning a buffer: false while
// clientHandshake and serverHandshake run crypto/tls, true once they run
// tlsconn. TestTLSReadsOnReady checks that it matches the code.
const tlsReadsOnReady = true

// idleCase is a mode of TestManyIdleConnections and what its idle
// connections must look like.
type idleCase struct {
	mode mode
	// probed is how many ends of each connection gRPC reads through one of
	// this package's ReadOnReady methods (counted by the probe); grpcOwn
	// is how many it reads through grpc-go's own non-pinning reader
	// (counted on goroutine stacks).
	probed, grpcOwn int
	// pool, if not nil, is where the record layers of the connections
	// take their buffers; idle means none is in use.
	pool *bufferpool.Tiered
}

// grpcOwnReader is the function grpc-go's own non-pinning reader parks in.
const grpcOwnReader = "internal/transport/readyreader.(*nonBlockingReader).ReadOnReady"

// countParked counts the goroutines parked in the network poller with fn
// on their stack.
func countParked(fn string) int { return testnet.CountParked(fn, "[IO wait") }

// plainReaders says how gRPC reads a TCP connection made by Listener or
// Dialer on this system: through WrapConn's ReadOnReady (probed), or
// through grpc-go's own non-pinning reader (grpcOwn).
func plainReaders(t *testing.T) (probed, grpcOwn int) {
	c, _ := testnet.TCPPair(t)
	switch w := WrapConn(c); {
	case w != net.Conn(c):
		return 2, 0
	case grpcReadsWithoutPinning(c):
		return 0, 2
	}
	return 0, 0
}

// TestManyIdleConnections opens 500 connections, makes an RPC on each,
// leaves them idle, checks that no read buffer is held anywhere on their
// behalf where the mode promises it, then uses them all again. Every
// handshake and RPC has its own budget.
func TestManyIdleConnections(t *testing.T) {
	// 500 connections per mode; 100 under the race detector, which makes
	// them about ten times slower (.ci/run runs this test once more
	// without it, with all 500).
	conns := 500
	if israce.Enabled {
		conns = 100
	}
	pool := bufferpool.NewTiered()
	a, _ := pkis(t)
	cases := []idleCase{{
		mode: mode{
			name: "alts",
			server: func(t testing.TB, lis net.Listener) (net.Listener, grpc.ServerOption) {
				return lis, grpc.Creds(NewCredentials(a.ServerConfig(false), alts.WithPool(pool)))
			},
			client: []grpc.DialOption{grpc.WithTransportCredentials(NewCredentials(a.ClientConfig(false), alts.WithPool(pool)))},
		},
		probed: 2,
		pool:   pool,
	}}
	probed, grpcOwn := plainReaders(t)
	cases = append(cases, idleCase{mode: plainMode(), probed: probed, grpcOwn: grpcOwn})
	// NewTLS, like grpc's credentials.NewTLS, takes no options: its
	// connections use bufferpool.Default(), which connections of earlier
	// tests of the package may still be giving back on a loaded machine.
	// The idle check counts a pool of its own, set through the package's
	// tlsOptions.
	tlsPool := bufferpool.NewTiered()
	for _, p := range tlsPairings {
		c := idleCase{mode: p.tlsMode(t, false)}
		if tlsReadsOnReady {
			c.probed = p.readyEnds()
			c.pool = tlsPool
		}
		cases = append(cases, c)
	}
	saved := tlsOptions
	tlsOptions = append(append([]tlsconn.Option(nil), saved...), tlsconn.WithPool(tlsPool))
	defer func() { tlsOptions = saved }()
	for _, c := range cases {
		t.Run(c.mode.name, func(t *testing.T) {
			probe := installProbe(t)
			s := startServer(t, c.mode)
			clients := make([]testpb.TestServiceClient, conns)
			for i := range clients {
				clients[i] = testpb.NewTestServiceClient(dial(t, s.addr, c.mode.client...))
			}
			useAll := func(round int) {
				var wg sync.WaitGroup
				errs := make(chan error, conns)
				sem := make(chan struct{}, 32)
				for i, tc := range clients {
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						// The first round includes the handshake.
						ctx, cancel := context.WithTimeout(context.Background(), opBudget)
						defer cancel()
						n := int32(100 + i + round)
						resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: n, Payload: payload(n)})
						if err != nil {
							errs <- fmt.Errorf("round %d, connection %d: %w", round, i, err)
						} else if string(resp.Payload.GetBody()) != string(payload(n).Body) {
							errs <- fmt.Errorf("round %d, connection %d: wrong response", round, i)
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
			if c.probed > 0 {
				require.Positive(t, probe.calls.Load(), "gRPC never called ReadOnReady on the connection")
			}

			// Idle: every connection has its readers parked, and none of
			// them holds a buffer. gRPC may still send a late control
			// frame (a window update, a BDP ping) after the RPCs return,
			// and the reader it wakes holds a buffer for a moment; so
			// wait for a quiet moment, and fail if there is none: a
			// buffer held while idle never lets these counts reach zero.
			type state struct {
				parked, held, inUse int64
				grpcParked          int
			}
			get := func() state {
				st := state{parked: probe.inFlight.Load(), held: probe.heldInFlight.Load()}
				if c.pool != nil {
					st.inUse = c.pool.Stats().InUseBytes
				}
				if c.grpcOwn > 0 {
					st.grpcParked = countParked(grpcOwnReader)
				}
				return st
			}
			quiet := func() bool {
				st := get()
				return st.parked >= int64(c.probed*conns) && st.held == 0 && st.inUse == 0 &&
					st.grpcParked >= c.grpcOwn*conns
			}
			if !assert.Eventually(t, quiet, opBudget, 50*time.Millisecond) {
				st := get()
				t.Fatalf("never idle: %d readers parked in ReadOnReady (want %d), %d buffers from gRPC's pool held by them, "+
					"%d bytes of record buffers in use, %d readers parked in grpc-go's own reader (want %d)",
					st.parked, c.probed*conns, st.held, st.inUse, st.grpcParked, c.grpcOwn*conns)
			}
			if c.pool != nil {
				assert.Positive(t, c.pool.Stats().Gets)
			}
			useAll(1)
		})
	}
}

// secureModes are the secure modes with the given client and server
// configurations: ALTS records, and every TLS pairing.
func secureModes(ccfg, scfg *tls.Config) []mode {
	ms := []mode{{
		name: "alts",
		server: func(t testing.TB, lis net.Listener) (net.Listener, grpc.ServerOption) {
			return lis, grpc.Creds(NewCredentials(scfg))
		},
		client: []grpc.DialOption{grpc.WithTransportCredentials(NewCredentials(ccfg))},
	}}
	for _, p := range tlsPairings {
		ms = append(ms, p.mode(ccfg, scfg, false))
	}
	return ms
}

// TestMutualTLSRequired checks that a client without a certificate cannot
// make calls to a server that requires one.
func TestMutualTLSRequired(t *testing.T) {
	a, _ := pkis(t)
	for _, m := range secureModes(a.ClientConfig(false), a.ServerConfig(true)) {
		t.Run(m.name, func(t *testing.T) {
			s := startServer(t, m)
			cc := dial(t, s.addr, m.client...)
			_, err := testpb.NewTestServiceClient(cc).EmptyCall(opCtx(t), &testpb.Empty{})
			require.Error(t, err)
			assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		})
	}
}

// TestWrongRootCA checks that a client that does not trust the server's CA
// fails the handshake.
func TestWrongRootCA(t *testing.T) {
	a, b := pkis(t)
	for _, m := range secureModes(b.ClientConfig(false), a.ServerConfig(false)) {
		t.Run(m.name, func(t *testing.T) {
			s := startServer(t, m)
			cc := dial(t, s.addr, m.client...)
			_, err := testpb.NewTestServiceClient(cc).EmptyCall(opCtx(t), &testpb.Empty{})
			require.Error(t, err)
			assert.Equal(t, codes.Unavailable, status.Code(err))
			assert.Contains(t, err.Error(), "authentication handshake failed")
			assert.Contains(t, err.Error(), "certificate signed by unknown authority")
		})
	}
}

func TestPlainTLSPeers(t *testing.T) {
	a, _ := pkis(t)
	t.Run("grpc TLS client, readyconn server", func(t *testing.T) {
		s := startServer(t, altsMode(t, false))
		cc := dial(t, s.addr, grpc.WithTransportCredentials(credentials.NewTLS(a.ClientConfig(false))))
		_, err := testpb.NewTestServiceClient(cc).EmptyCall(opCtx(t), &testpb.Empty{})
		require.Error(t, err)
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Contains(t, err.Error(), "no application protocol")
	})
	t.Run("readyconn client, grpc TLS server", func(t *testing.T) {
		s := startServer(t, tlsMode(t))
		cc := dial(t, s.addr, altsMode(t, false).client...)
		_, err := testpb.NewTestServiceClient(cc).EmptyCall(opCtx(t), &testpb.Empty{})
		require.Error(t, err)
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Contains(t, err.Error(), "alts: handshake failed")
	})
	t.Run("plaintext client, readyconn server", func(t *testing.T) {
		s := startServer(t, altsMode(t, false))
		cc := dial(t, s.addr, plainMode().client...)
		_, err := testpb.NewTestServiceClient(cc).EmptyCall(opCtx(t), &testpb.Empty{})
		require.Error(t, err)
		assert.Equal(t, codes.Unavailable, status.Code(err))
	})
}

// TestGracefulStop checks that GracefulStop lets a stream in progress
// finish and then refuses new calls.
func TestGracefulStop(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.name, func(t *testing.T) {
			s := startServer(t, m)
			tc := testpb.NewTestServiceClient(dial(t, s.addr, m.client...))
			st, err := tc.FullDuplexCall(opCtx(t))
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
			case <-time.After(opBudget):
				t.Fatal("GracefulStop did not return after the last stream ended")
			}
			// New calls fail.
			_, err = tc.EmptyCall(opCtx(t), &testpb.Empty{})
			assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		})
	}
}

// TestDeadlinesAndCancellation checks that a call's deadline and its
// cancellation reach the handler, and that the connection stays usable.
func TestDeadlinesAndCancellation(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.name, func(t *testing.T) {
			s := startServer(t, m)
			tc := testpb.NewTestServiceClient(dial(t, s.addr, m.client...))
			// Make sure the connection is up.
			_, err := tc.EmptyCall(opCtx(t), &testpb.Empty{})
			require.NoError(t, err)

			// Long enough for the request to leave the client even on a
			// loaded machine: a deadline that fires first never reaches
			// the handler, which the test waits for.
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = tc.UnaryCall(dctx, &testpb.SimpleRequest{ResponseSize: -1})
			cancel()
			assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
			select {
			case err := <-s.impl.canceled:
				// The server's own timer or the client's
				// RST_STREAM, whichever comes first.
				assert.Error(t, err)
			case <-time.After(opBudget):
				t.Fatal("server handler did not see the deadline")
			}

			cctx, cancel := context.WithCancel(opCtx(t))
			st, err := tc.StreamingOutputCall(cctx, &testpb.StreamingOutputCallRequest{
				ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 10, IntervalUs: 600e6}},
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
			case <-time.After(opBudget):
				t.Fatal("server handler did not see the cancellation")
			}
			// The connection is still fine.
			_, err = tc.EmptyCall(opCtx(t), &testpb.Empty{})
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
	resp, err := testpb.NewTestServiceClient(cc).UnaryCall(opCtx(t), &testpb.SimpleRequest{ResponseSize: 1000})
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

// TestWrapConn checks that a connection without a socket is returned
// unchanged. What happens to sockets depends on the system:
// TestWrapConnLinux, TestWrapConnUnix.
func TestWrapConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	assert.Same(t, a, WrapConn(a))
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
	a, _ := pkis(t)
	for _, m := range secureModes(a.ClientConfig(false), a.ServerConfig(false)) {
		t.Run(m.name, func(t *testing.T) {
			s := startServer(t, m)
			_, port, err := net.SplitHostPort(s.addr)
			require.NoError(t, err)

			cc := dial(t, s.addr, append(m.client, grpc.WithAuthority("localhost:"+port))...)
			_, err = testpb.NewTestServiceClient(cc).EmptyCall(opCtx(t), &testpb.Empty{})
			require.NoError(t, err)

			cc = dial(t, s.addr, append(m.client, grpc.WithAuthority("evil.example:"+port))...)
			_, err = testpb.NewTestServiceClient(cc).EmptyCall(opCtx(t), &testpb.Empty{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "evil.example")
		})
	}
}
