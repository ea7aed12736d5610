package readygrpc

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/readyconn/readyconn/internal/testcert"
)

func TestMain(m *testing.M) {
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
}

func altsMode(t testing.TB, mutual bool, opts ...grpc.DialOption) mode {
	a, _ := pkis(t)
	return mode{
		name: "alts",
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

func tlsMode(t testing.TB) mode {
	a, _ := pkis(t)
	return mode{
		name: "tls",
		server: func(t testing.TB, lis net.Listener) (net.Listener, grpc.ServerOption) {
			return lis, grpc.Creds(credentials.NewTLS(a.ServerConfig(false)))
		},
		client: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(a.ClientConfig(false)))},
	}
}

type server struct {
	addr string
	srv  *grpc.Server
	impl *testServer
}

// startServer serves TestService and Health on a loopback listener; the
// server is stopped when the test ends.
func startServer(t testing.TB, m mode) *server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l, opt := m.server(t, lis)
	s := &server{
		addr: lis.Addr().String(),
		srv:  grpc.NewServer(opt, grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg)),
		impl: &testServer{canceled: make(chan error, 16)},
	}
	testpb.RegisterTestServiceServer(s.srv, s.impl)
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

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
