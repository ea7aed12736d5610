package readygrpc_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/readyconn/readyconn/integration/readygrpc"
	"github.com/readyconn/readyconn/internal/testcert"
)

// NewTLS replaces credentials.NewTLS at either end or both; the other end
// can be any gRPC TLS implementation.
func ExampleNewTLS() {
	pki, err := testcert.New("example")
	if err != nil {
		log.Fatal(err)
	}

	// Server: was grpc.Creds(credentials.NewTLS(serverConfig)).
	srv := grpc.NewServer(grpc.Creds(readygrpc.NewTLS(pki.ServerConfig(false))))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	// Client: was grpc.WithTransportCredentials(credentials.NewTLS(clientConfig)).
	// The server name checked is the host of the target, as with grpc's
	// credentials.
	cc, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(readygrpc.NewTLS(pki.ClientConfig(false))))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status)
	// Output: SERVING
}
