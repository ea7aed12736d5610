package benchmarks

// gRPC over readyconn's TLS-1.3-authenticated ALTS records
// (readygrpc.NewCredentials), over standard TLS with tlsconn's record layer
// (readygrpc.NewTLS), and over crypto/tls (credentials.NewTLS), side by side: unary RPC throughput and 1 MiB
// streaming throughput over loopback TCP. Run with
//
//	go test -run '^$' -bench 'GRPC' -benchmem -count 6 ./benchmarks/ | tee grpc.txt
//	benchstat -col /creds grpc.txt
//
// Each reports cpu-ns/op, the process CPU time per operation (both ends,
// gRPC's goroutines, the garbage collector): the figure to compare on a
// shared machine.

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/readyconn/readyconn/benchmarks/internal/cputime"
	"github.com/readyconn/readyconn/integration/readygrpc"
	"github.com/readyconn/readyconn/internal/testcert"
)

var (
	grpcbPKIOnce sync.Once
	grpcbPKI     *testcert.PKI
	grpcbErr     error
)

// grpcbTLS returns a server config with a certificate for 127.0.0.1 and a
// client config that trusts it.
func grpcbTLS(b *testing.B) (server, client *tls.Config) {
	grpcbPKIOnce.Do(func() { grpcbPKI, grpcbErr = testcert.New("bench") })
	if grpcbErr != nil {
		b.Fatal(grpcbErr)
	}
	return grpcbPKI.ServerConfig(false), grpcbPKI.ClientConfig(false)
}

var grpcbCreds = []struct {
	name string
	make func(cfg *tls.Config) credentials.TransportCredentials
}{
	{"readyconn", func(cfg *tls.Config) credentials.TransportCredentials { return readygrpc.NewCredentials(cfg) }},
	{"tlsconn", readygrpc.NewTLS},
	{"tls", credentials.NewTLS},
}

type grpcbService struct {
	testpb.UnimplementedTestServiceServer
}

func (grpcbService) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: req.Payload}, nil
}

func (grpcbService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	var total int32
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: total})
		}
		if err != nil {
			return err
		}
		total += int32(len(req.Payload.GetBody()))
	}
}

// grpcbSetup starts a server and a client over the named credentials and
// returns the client; everything is stopped when the benchmark ends.
func grpcbSetup(b *testing.B, creds func(*tls.Config) credentials.TransportCredentials) testpb.TestServiceClient {
	scfg, ccfg := grpcbTLS(b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds(scfg)), grpc.MaxRecvMsgSize(4<<20))
	testpb.RegisterTestServiceServer(srv, grpcbService{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(creds(ccfg)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cc.Close()
		srv.Stop()
		<-done
	})
	return testpb.NewTestServiceClient(cc)
}

// BenchmarkGRPCUnary measures unary RPCs with a 1 KiB request and response,
// issued by GOMAXPROCS×4 concurrent callers over one connection.
func BenchmarkGRPCUnary(b *testing.B) {
	for _, c := range grpcbCreds {
		b.Run("creds="+c.name, func(b *testing.B) {
			client := grpcbSetup(b, c.make)
			req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 1024)}}
			ctx := context.Background()
			if _, err := client.UnaryCall(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(2 * 1024)
			b.SetParallelism(4)
			b.ReportAllocs()
			b.ResetTimer()
			defer cputime.Start(b).Stop()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.UnaryCall(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkGRPCStream1MiB measures client-streaming throughput: each
// iteration sends one 1 MiB message on a long-lived stream.
func BenchmarkGRPCStream1MiB(b *testing.B) {
	for _, c := range grpcbCreds {
		b.Run("creds="+c.name, func(b *testing.B) {
			client := grpcbSetup(b, c.make)
			req := &testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 1<<20)}}
			st, err := client.StreamingInputCall(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(1 << 20)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cputime.Start(b)
			for range b.N {
				if err := st.Send(req); err != nil {
					b.Fatal(err)
				}
			}
			resp, err := st.CloseAndRecv()
			cpu.Stop()
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if int(resp.AggregatedPayloadSize) != b.N<<20 && b.N < 2048 {
				b.Fatalf("server received %d bytes, want %d", resp.AggregatedPayloadSize, b.N<<20)
			}
		})
	}
}
