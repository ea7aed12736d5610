package readygrpc

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"golang.org/x/net/nettest"
	"google.golang.org/grpc/credentials"
)

// plainPipe makes a connected pair through Listener and Dialer: the
// connections gRPC gets from them.
func plainPipe(t *testing.T, network string) nettest.MakePipe {
	return func() (c1, c2 net.Conn, stop func(), err error) {
		addr := "127.0.0.1:0"
		if network == "unix" {
			addr = filepath.Join(t.TempDir(), "s")
		}
		lis, err := net.Listen(network, addr)
		if err != nil {
			return nil, nil, nil, err
		}
		defer lis.Close()
		l := Listener(lis)
		type accepted struct {
			c   net.Conn
			err error
		}
		ch := make(chan accepted, 1)
		go func() {
			c, err := l.Accept()
			ch <- accepted{c, err}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), opBudget)
		defer cancel()
		dc, err := Dialer(nil, "")(ctx, lis.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		a := <-ch
		if a.err != nil {
			dc.Close()
			return nil, nil, nil, a.err
		}
		return dc, a.c, func() { dc.Close(); a.c.Close() }, nil
	}
}

// credsPipe makes a connected pair by running the handshakes of client and
// server credentials over loopback TCP: the connections gRPC gets from
// them.
func credsPipe(t *testing.T, client, server credentials.TransportCredentials) nettest.MakePipe {
	return func() (c1, c2 net.Conn, stop func(), err error) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, nil, err
		}
		defer lis.Close()
		type accepted struct {
			c   net.Conn
			err error
		}
		ch := make(chan accepted, 1)
		go func() {
			raw, err := lis.Accept()
			if err != nil {
				ch <- accepted{nil, err}
				return
			}
			c, _, err := server.ServerHandshake(raw)
			if err != nil {
				raw.Close()
			}
			ch <- accepted{c, err}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), opBudget)
		defer cancel()
		raw, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		cc, _, cerr := client.ClientHandshake(ctx, "localhost:443", raw)
		a := <-ch
		if cerr != nil || a.err != nil {
			raw.Close()
			if a.c != nil {
				a.c.Close()
			}
			if cerr == nil {
				cerr = a.err
			}
			return nil, nil, nil, cerr
		}
		return cc, a.c, func() { cc.Close(); a.c.Close() }, nil
	}
}

// TestNetConn runs golang.org/x/net/nettest.TestConn on every kind of
// connection this package hands to gRPC: each must be a net.Conn in full.
func TestNetConn(t *testing.T) {
	a, _ := pkis(t)
	tests := []struct {
		name string
		pipe nettest.MakePipe
		// pending, if not empty, says why the kind does not pass yet; the
		// test is skipped with that reason.
		pending string
	}{
		{name: "plain/tcp", pipe: plainPipe(t, "tcp")},
		{name: "plain/unix", pipe: plainPipe(t, "unix")},
		{
			name: "tls/NewTLS",
			pipe: credsPipe(t, NewTLS(a.ClientConfig(false)), NewTLS(a.ServerConfig(false))),
		},
		{name: "alts", pipe: credsPipe(t, NewCredentials(a.ClientConfig(false)), NewCredentials(a.ServerConfig(false)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.pending != "" {
				t.Skip(tt.pending)
			}
			nettest.TestConn(t, tt.pipe)
		})
	}
}
