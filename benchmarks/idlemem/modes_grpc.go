package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// grpcSetup is how a gRPC mode builds its two ends: transport credentials
// for the server and the client, extra server and dial options, and
// optionally a wrapper around the server's listener.
type grpcSetup struct {
	server, client credentials.TransportCredentials
	serverOpts     []grpc.ServerOption
	dialOpts       []grpc.DialOption
	listener       func(net.Listener) net.Listener // nil: the TCP listener as is
}

// grpcMode returns the setup of a gRPC mode; openGRPC does the rest.
type grpcMode func(e *env) (grpcSetup, error)

func grpcPlaintext(*env) (grpcSetup, error) {
	return grpcSetup{server: insecure.NewCredentials(), client: insecure.NewCredentials()}, nil
}

func grpcTLS(e *env) (grpcSetup, error) {
	cfg, err := e.tlsConfigs()
	if err != nil {
		return grpcSetup{}, err
	}
	return grpcSetup{server: credentials.NewTLS(cfg.server), client: credentials.NewTLS(cfg.client)}, nil
}

// grpcTLSRbuf0 is grpcTLS with gRPC's own read buffer turned off on both
// ends: the HTTP/2 framer then reads straight from the *tls.Conn, whose
// record buffer is what stays pinned.
func grpcTLSRbuf0(e *env) (grpcSetup, error) {
	s, err := grpcTLS(e)
	if err != nil {
		return grpcSetup{}, err
	}
	s.serverOpts = append(s.serverOpts, grpc.ReadBufferSize(0))
	s.dialOpts = append(s.dialOpts, grpc.WithReadBufferSize(0))
	return s, nil
}

// openGRPC starts one grpc.Server with the health service and the interop
// TestService on a loopback listener, opens e.n ClientConns to it, each
// with a connection of its own, and makes one health-check RPC on each.
// Then every connection is idle: the client transport's reader and the
// server transport's reader are blocked, as in a real program between
// RPCs. It sets e.burst to stream opts.Burst bytes each way through every
// connection.
func openGRPC(e *env, mode grpcMode) error {
	setup, err := mode(e)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	if setup.listener != nil {
		ln = setup.listener(ln)
	}
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(setup.server)}, setup.serverOpts...)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	testgrpc.RegisterTestServiceServer(srv, burstServer{})
	e.onClose(func() error { srv.Stop(); return nil })
	e.spawn(func() {
		if err := srv.Serve(ln); err != nil {
			e.fail(fmt.Errorf("grpc Serve: %w", err))
		}
	})

	target := "passthrough:///" + addr
	dialOpts := append([]grpc.DialOption{grpc.WithTransportCredentials(setup.client)}, setup.dialOpts...)
	var (
		mu  sync.Mutex
		ccs = make([]*grpc.ClientConn, 0, e.n)
	)
	err = e.runWorkers(func(int) error {
		cc, err := grpc.NewClient(target, dialOpts...)
		if err != nil {
			return err
		}
		e.track(cc)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return fmt.Errorf("health check: %w", err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health check: status %v", resp.GetStatus())
		}
		mu.Lock()
		ccs = append(ccs, cc)
		mu.Unlock()
		e.connOpened()
		return nil
	})
	if err != nil {
		return err
	}
	e.burst = func() error {
		return e.runWorkers(func(i int) error { return burst(ccs[i], e.opts.Burst) })
	}
	return nil
}

// burstChunk is the message size of a burst: what an RPC stack streaming a
// large payload typically sends per message.
const burstChunk = 64 << 10

// zeros is the payload of every burst message (read only).
var zeros = make([]byte, burstChunk)

// burst moves n bytes each way over cc in one FullDuplexCall of the interop
// TestService: requests of up to burstChunk bytes, each answered with a
// response of the same size before the next is sent.
func burst(cc *grpc.ClientConn, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := testgrpc.NewTestServiceClient(cc).FullDuplexCall(ctx)
	if err != nil {
		return fmt.Errorf("burst: %w", err)
	}
	for sent := 0; sent < n; {
		k := min(burstChunk, n-sent)
		req := &testgrpc.StreamingOutputCallRequest{
			Payload:            &testgrpc.Payload{Body: zeros[:k]},
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: int32(k)}},
		}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("burst send: %w", err)
		}
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("burst receive: %w", err)
		}
		if got := len(resp.GetPayload().GetBody()); got != k {
			return fmt.Errorf("burst: response of %d bytes, want %d", got, k)
		}
		sent += k
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("burst: %w", err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("burst: stream did not end: %v", err)
	}
	return nil
}

// burstServer implements the TestService's FullDuplexCall as the interop
// tests define it: for each request, one response per requested size.
type burstServer struct {
	testgrpc.UnimplementedTestServiceServer
}

func (burstServer) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range req.GetResponseParameters() {
			size := int(p.GetSize())
			if size < 0 || size > len(zeros) {
				return fmt.Errorf("response size %d outside [0, %d]", size, len(zeros))
			}
			resp := &testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: zeros[:size]}}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}
