package readygrpc

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/readyconn/readyconn/internal/testcert"
)

func TestMain(m *testing.M) {
	grpclog.SetLoggerV2(newTrapLogger())
	goleak.VerifyTestMain(m)
}

var (
	pkiOnce    sync.Once
	pkiA, pkiB *testcert.PKI // two unrelated CAs
	errPKI     error
)

func pkis(t testing.TB) (a, b *testcert.PKI) {
	pkiOnce.Do(func() {
		if pkiA, errPKI = testcert.New("A"); errPKI == nil {
			pkiB, errPKI = testcert.New("B")
		}
	})
	require.NoError(t, errPKI)
	return pkiA, pkiB
}

// testServer implements grpc.testing.TestService.
type testServer struct {
	testpb.UnimplementedTestServiceServer
	// canceled receives one value per handler that saw its context end.
	canceled chan error
}

func payload(n int32) *testpb.Payload {
	if n == 0 {
		return &testpb.Payload{} // as it decodes
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + int(n))
	}
	return &testpb.Payload{Body: b}
}

func (s *testServer) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// UnaryCall answers with ResponseSize bytes and, with FillUsername, the
// common name of the client certificate in Username. A negative
// ResponseSize makes it wait for the context to end.
func (s *testServer) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if req.ResponseSize < 0 {
		<-ctx.Done()
		s.canceled <- ctx.Err()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	resp := &testpb.SimpleResponse{Payload: payload(req.ResponseSize)}
	if req.FillUsername {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return nil, status.Error(codes.Internal, "no peer")
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok {
			return nil, status.Errorf(codes.Unauthenticated, "AuthInfo %T", p.AuthInfo)
		}
		if info.SecurityLevel != credentials.PrivacyAndIntegrity || len(info.State.PeerCertificates) == 0 {
			return nil, status.Error(codes.Unauthenticated, "no client certificate")
		}
		resp.Username = info.State.PeerCertificates[0].Subject.CommonName
		if info.SPIFFEID != nil {
			resp.OauthScope = info.SPIFFEID.String()
		}
	}
	return resp, nil
}

func (s *testServer) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range req.ResponseParameters {
		if p.IntervalUs > 0 {
			select {
			case <-time.After(time.Duration(p.IntervalUs) * time.Microsecond):
			case <-stream.Context().Done():
				s.canceled <- stream.Context().Err()
				return stream.Context().Err()
			}
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.Size)}); err != nil {
			return err
		}
	}
	return nil
}

func (s *testServer) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	var total int32
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: total})
		}
		if err != nil {
			return err
		}
		if want := payload(int32(len(req.Payload.GetBody()))).Body; string(want) != string(req.Payload.GetBody()) {
			return status.Error(codes.DataLoss, "payload corrupted")
		}
		total += int32(len(req.Payload.GetBody()))
	}
}

func (s *testServer) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if req.Payload != nil {
			// Echo the request payload.
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.Payload}); err != nil {
				return err
			}
		}
		for _, p := range req.ResponseParameters {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.Size)}); err != nil {
				return err
			}
		}
	}
}

const maxMsg = 8 << 20

// mode is one way of running gRPC: over these credentials, over grpc's TLS
// credentials, or in plaintext through Listener and Dialer.
type mode struct {
	name   string
	server func(t testing.TB, lis net.Listener) (net.Listener, grpc.ServerOption)
	client []grpc.DialOption
	// mutual: the client presents the client certificate of testcert,
	// and the server requires it.
	mutual bool
}

func altsMode(t testing.TB, mutual bool, opts ...grpc.DialOption) mode {
	a, _ := pkis(t)
	return mode{
		name:   "alts",
		mutual: mutual,
		server: func(t testing.TB, lis net.Listener) (net.Listener, grpc.ServerOption) {
			return lis, grpc.Creds(NewCredentials(a.ServerConfig(mutual)))
		},
		client: append([]grpc.DialOption{grpc.WithTransportCredentials(NewCredentials(a.ClientConfig(mutual)))}, opts...),
	}
}

func plainMode() mode {
	return mode{
		name: "plain",
		server: func(t testing.TB, lis net.Listener) (net.Listener, grpc.ServerOption) {
			return Listener(lis), grpc.Creds(insecure.NewCredentials())
		},
		client: []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(Dialer(nil, "")),
		},
	}
}

// tlsImpl is an implementation of gRPC's TLS credentials: grpc's own or
// this package's.
type tlsImpl struct {
	name  string
	creds func(*tls.Config) credentials.TransportCredentials
}

var (
	stockTLS = tlsImpl{"stock", credentials.NewTLS}
	readyTLS = tlsImpl{"readygrpc", NewTLS}
)

// tlsPairing is one pairing of TLS credentials at the two ends.
type tlsPairing struct{ client, server tlsImpl }

func (p tlsPairing) String() string {
	return "tls:client=" + p.client.name + ",server=" + p.server.name
}

// tlsPairings are the pairings every TLS test runs: this package's
// credentials against grpc's in both directions, and at both ends.
var tlsPairings = []tlsPairing{
	{client: stockTLS, server: readyTLS},
	{client: readyTLS, server: stockTLS},
	{client: readyTLS, server: readyTLS},
}

// readyEnds is how many ends of a connection use this package's
// credentials.
func (p tlsPairing) readyEnds() int {
	n := 0
	for _, i := range []tlsImpl{p.client, p.server} {
		if i.name == readyTLS.name {
			n++
		}
	}
	return n
}

// mode runs gRPC over TLS with the given configurations: ccfg for the
// client, scfg for the server.
func (p tlsPairing) mode(ccfg, scfg *tls.Config, mutual bool) mode {
	return mode{
		name:   p.String(),
		mutual: mutual,
		server: func(t testing.TB, lis net.Listener) (net.Listener, grpc.ServerOption) {
			return lis, grpc.Creds(p.server.creds(scfg))
		},
		client: []grpc.DialOption{grpc.WithTransportCredentials(p.client.creds(ccfg))},
	}
}

// tlsMode is p.mode with testcert's configurations, mutual TLS or not.
func (p tlsPairing) tlsMode(t testing.TB, mutual bool) mode {
	a, _ := pkis(t)
	return p.mode(a.ClientConfig(mutual), a.ServerConfig(mutual), mutual)
}

func tlsMode(t testing.TB) mode {
	m := tlsPairing{client: stockTLS, server: stockTLS}.tlsMode(t, false)
	m.name = "tls"
	return m
}

// modes are the ways of running gRPC that every functional test covers:
// ALTS records with mutual TLS, plaintext through Listener and Dialer, and
// every TLS pairing with mutual TLS.
func modes(t testing.TB) []mode {
	m := altsMode(t, true)
	m.name = "alts-mtls"
	ms := []mode{m, plainMode()}
	for _, p := range tlsPairings {
		ms = append(ms, p.tlsMode(t, true))
	}
	return ms
}

type server struct {
	addr string
	srv  *grpc.Server
	impl *testServer
}

// startServer serves TestService (testServer) and Health on a loopback
// listener; the server is stopped when the test ends.
func startServer(t testing.TB, m mode) *server {
	t.Helper()
	return startServerWith(t, m, nil)
}

// startServerWith is startServer with impl instead of testServer, if impl
// is not nil.
func startServerWith(t testing.TB, m mode, impl testpb.TestServiceServer) *server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l, opt := m.server(t, lis)
	s := &server{
		addr: lis.Addr().String(),
		srv:  grpc.NewServer(opt, grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg)),
		impl: &testServer{canceled: make(chan error, 16)},
	}
	if impl == nil {
		impl = s.impl
	}
	testpb.RegisterTestServiceServer(s.srv, impl)
	healthpb.RegisterHealthServer(s.srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.srv.Serve(l)
	}()
	t.Cleanup(func() {
		s.srv.Stop()
		<-done
	})
	return s
}

// dial returns a client connection to addr that is closed when the test
// ends.
func dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg))}, opts...)
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// opCtx returns a context for one operation of a test (an RPC, a stream,
// a dial), which ends after opBudget.
func opCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opBudget)
	t.Cleanup(cancel)
	return ctx
}

// opBudget bounds one operation of a test (a handshake, an RPC, a stream,
// a subprocess run): generous, because a loaded 2-core machine running
// -race is slow, and per operation, so that many operations never share
// one deadline.
const opBudget = 60 * time.Second

// trapLogger is grpc's default logger (the same severity and verbosity
// environment variables), except that a fatal log panics with a fatalLog
// instead of exiting the process: grpc's interop.Do* checks log fatally
// when they fail, and runInterop turns that into a test failure.
type trapLogger struct{ grpclog.LoggerV2 }

type fatalLog string

func newTrapLogger() trapLogger {
	errW, warnW, infoW := io.Discard, io.Discard, io.Discard
	switch strings.ToLower(os.Getenv("GRPC_GO_LOG_SEVERITY_LEVEL")) {
	case "", "error":
		errW = os.Stderr
	case "warning":
		warnW = os.Stderr
	case "info":
		infoW = os.Stderr
	}
	v, _ := strconv.Atoi(os.Getenv("GRPC_GO_LOG_VERBOSITY_LEVEL"))
	return trapLogger{grpclog.NewLoggerV2WithVerbosity(infoW, warnW, errW, v)}
}

func (trapLogger) Fatal(args ...any)                 { panic(fatalLog(fmt.Sprint(args...))) }
func (trapLogger) Fatalf(format string, args ...any) { panic(fatalLog(fmt.Sprintf(format, args...))) }
func (trapLogger) Fatalln(args ...any)               { panic(fatalLog(fmt.Sprintln(args...))) }

// runInterop runs check, one of grpc's interop.Do* functions, and fails t
// with its message if it fails.
func runInterop(t testing.TB, check func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			msg, ok := r.(fatalLog)
			if !ok {
				panic(r)
			}
			t.Fatalf("interop check failed: %s", msg)
		}
	}()
	check()
}
