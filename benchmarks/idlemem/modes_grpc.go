package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcCreds returns the server and client transport credentials of a gRPC
// mode.
type grpcCreds func(e *env) (server, client credentials.TransportCredentials, err error)

func grpcPlaintext(*env) (credentials.TransportCredentials, credentials.TransportCredentials, error) {
	return insecure.NewCredentials(), insecure.NewCredentials(), nil
}

func grpcTLS(e *env) (credentials.TransportCredentials, credentials.TransportCredentials, error) {
	cfg, err := e.tlsConfigs()
	if err != nil {
		return nil, nil, err
	}
	return credentials.NewTLS(cfg.server), credentials.NewTLS(cfg.client), nil
}

// openGRPC starts one grpc.Server with the health service on a loopback
// listener and opens e.n ClientConns to it, each with a connection of its
// own, and makes one health-check RPC on each. Then every connection is
// idle: the client transport's reader and the server transport's reader are
// blocked, as in a real program between RPCs.
func openGRPC(e *env, creds grpcCreds) error {
	serverCreds, clientCreds, err := creds(e)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.Creds(serverCreds))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	e.onClose(func() error { srv.Stop(); return nil })
	e.spawn(func() {
		if err := srv.Serve(ln); err != nil {
			e.fail(fmt.Errorf("grpc Serve: %w", err))
		}
	})

	target := "passthrough:///" + ln.Addr().String()
	return e.runWorkers(func(int) error {
		cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(clientCreds))
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
		e.connOpened()
		return nil
	})
}
