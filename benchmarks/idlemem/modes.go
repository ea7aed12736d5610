package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/readyconn/readyconn/internal/testcert"
)

// mode is one way of holding idle connections. Adding a mode is adding one
// entry to the modes table, plus the function that makes its ends: an
// endFactory for a mode whose two ends are symmetric (openPairs runs them),
// or a grpcMode (credentials and options) for a gRPC mode (openGRPC runs
// it).
type mode struct {
	name string
	desc string // one line for the table's legend
	// usesPool reports whether the mode takes its buffers from env.pool,
	// so that the pool's InUseBytes is meaningful (and must be 0 when idle).
	usesPool bool
	// defaultPool makes env.pool bufferpool.Default(), for modes whose
	// API takes no pool (readygrpc.NewTLS, like grpc's credentials.NewTLS).
	// The child process measures one mode, so nothing else uses it.
	defaultPool bool
	// fdsPerConn is the number of file descriptors one connection (both
	// ends) uses; the open-file precondition is computed from it.
	fdsPerConn int
	// open opens env.n connections, exchanges one message on each, and
	// returns with a reader blocked on every end. Everything it creates
	// must be registered with env.track/onClose/spawn. A mode that can
	// carry a burst of traffic (-burst) sets env.burst.
	open func(e *env) error
}

// modes is the table of modes, in the order they are reported. The first
// entry is the floor that ratios are computed against.
var modes = []mode{
	{
		name:       "floor",
		desc:       "goroutine parked in syscall.RawConn.Read holding no buffer, on both ends",
		fdsPerConn: 2,
		open:       func(e *env) error { return e.openPairs(newFloor) },
	},
	{
		name:       "bufio",
		desc:       "net.Conn + bufio.NewReaderSize(conn, 32 KiB), blocked in Read, on both ends",
		fdsPerConn: 2,
		open:       func(e *env) error { return e.openPairs(newBufio) },
	},
	{
		name:       "readyreader",
		desc:       "readyreader.NewBuffered(readyreader.New(conn), 32 KiB, pool), blocked in Read, on both ends",
		usesPool:   true,
		fdsPerConn: 2,
		open:       func(e *env) error { return e.openPairs(newReady) },
	},
	{
		name:       "framing",
		desc:       "framing.NewReader(conn, 4-byte length, WithPool), blocked in ReadFrame, on both ends",
		usesPool:   true,
		fdsPerConn: 2,
		open:       func(e *env) error { return e.openPairs(newFraming) },
	},
	{
		name:       "tls",
		desc:       "crypto/tls 1.3, blocked in Read with a 64 B application buffer, on both ends",
		fdsPerConn: 2,
		open:       func(e *env) error { return e.openPairs(newTLS) },
	},
	{
		name:       "tlsconn",
		desc:       "tlsconn.Client/tlsconn.Server (crypto/tls 1.3 handshake, tlsconn records), blocked in Read with a 64 B buffer",
		usesPool:   true,
		fdsPerConn: 2,
		open:       func(e *env) error { return e.openPairs(newTLSConn) },
	},
	{
		name:       "alts",
		desc:       "alts.Client/alts.Server (TLS 1.3 handshake, ALTS records), blocked in Read with a 64 B buffer",
		usesPool:   true,
		fdsPerConn: 2,
		open:       func(e *env) error { return e.openPairs(newALTS) },
	},
	{
		name:       "grpc-plaintext",
		desc:       "grpc-go ClientConn + its server transport (insecure)",
		fdsPerConn: 2,
		open:       func(e *env) error { return openGRPC(e, grpcPlaintext) },
	},
	{
		name:       "grpc-tls",
		desc:       "grpc-go ClientConn + its server transport over crypto/tls 1.3 (credentials.NewTLS)",
		fdsPerConn: 2,
		open:       func(e *env) error { return openGRPC(e, grpcTLS) },
	},
	{
		name:       "grpc-tls-rbuf0",
		desc:       "grpc-tls with grpc.ReadBufferSize(0) and WithReadBufferSize(0): the cheapest idle TLS gRPC from grpc-go's own options",
		fdsPerConn: 2,
		open:       func(e *env) error { return openGRPC(e, grpcTLSRbuf0) },
	},
	{
		name:        "grpc-tlsconn",
		desc:        "grpc-go over readygrpc.NewTLS at both ends (crypto/tls 1.3 handshake, tlsconn records)",
		usesPool:    true,
		defaultPool: true,
		fdsPerConn:  2,
		open:        func(e *env) error { return openGRPC(e, grpcTLSConn) },
	},
	{
		name:        "grpc-tlsconn-server",
		desc:        "grpc-go: readygrpc.NewTLS server, stock credentials.NewTLS client (what a server operator saves alone)",
		usesPool:    true,
		defaultPool: true,
		fdsPerConn:  2,
		open:        func(e *env) error { return openGRPC(e, grpcTLSConnServer) },
	},
	{
		name:       "grpc-plaintext-readygrpc",
		desc:       "grpc-go insecure through readygrpc.Listener and readygrpc.Dialer",
		fdsPerConn: 2,
		open:       func(e *env) error { return openGRPC(e, grpcPlaintextReadygrpc) },
	},
	{
		name:       "grpc-readyconn",
		desc:       "grpc-go over readygrpc.NewCredentials (TLS 1.3 handshake, ALTS records)",
		usesPool:   true,
		fdsPerConn: 2,
		open:       func(e *env) error { return openGRPC(e, grpcReadyconn) },
	},
}

// findMode returns the mode called name.
func findMode(name string) (mode, bool) {
	for _, m := range modes {
		if m.name == name {
			return m, true
		}
	}
	return mode{}, false
}

func modeNames() []string {
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = m.name
	}
	return names
}

// rawEnd is the part every endpoint shares: the connection, the message
// it sends (whose length is also what recv reads) and, for the floor, its
// RawConn.
type rawEnd struct {
	c   net.Conn
	msg []byte
	rc  syscall.RawConn
}

func (r rawEnd) send() error {
	_, err := r.c.Write(r.msg)
	return err
}

func newFloor(e *env, c net.Conn, _ bool) (endpoint, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T is not a syscall.Conn", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return newFloorEnd(rawEnd{c: c, msg: e.message, rc: rc}), nil
}

// bufioEnd is the classic baseline: a bufio.Reader whose 32 KiB buffer is
// pinned by the blocked Read for as long as the peer is silent.
type bufioEnd struct {
	rawEnd
	br *bufio.Reader
}

func newBufio(e *env, c net.Conn, _ bool) (endpoint, error) {
	return &bufioEnd{rawEnd: rawEnd{c: c, msg: e.message}, br: bufio.NewReaderSize(c, 32<<10)}, nil
}

func (b *bufioEnd) recv() error {
	_, err := b.br.Discard(len(b.msg))
	return err
}

// tlsEnd reads from a crypto/tls connection into a small application
// buffer, so that what it holds is what crypto/tls itself keeps.
type tlsEnd struct {
	tc  *tls.Conn
	msg []byte
	buf [appBufLen]byte
}

func newTLS(e *env, c net.Conn, client bool) (endpoint, error) {
	cfg, err := e.tlsConfigs()
	if err != nil {
		return nil, err
	}
	var tc *tls.Conn
	if client {
		tc = tls.Client(c, cfg.client)
	} else {
		tc = tls.Server(c, cfg.server)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return &tlsEnd{tc: tc, msg: e.message}, nil
}

func (t *tlsEnd) recv() error { return readN(t.tc, t.buf[:], len(t.msg)) }

func (t *tlsEnd) send() error {
	_, err := t.tc.Write(t.msg)
	return err
}

// tlsConfigs holds a matching TLS 1.3 client and server configuration with
// a freshly generated ECDSA P-256 CA and server certificate (testcert), the
// client verifying it as 127.0.0.1.
type tlsConfigs struct {
	server, client *tls.Config
}

func (e *env) tlsConfigs() (*tlsConfigs, error) {
	e.tlsOnce.Do(func() { e.tls, e.tlsErr = newTLSConfigs() })
	return e.tls, e.tlsErr
}

func newTLSConfigs() (*tlsConfigs, error) {
	p, err := testcert.New("idlemem")
	if err != nil {
		return nil, err
	}
	cfg := &tlsConfigs{server: p.ServerConfig(false), client: p.ClientConfig(false)}
	cfg.server.MinVersion = tls.VersionTLS13
	cfg.client.MinVersion = tls.VersionTLS13
	cfg.client.ServerName = "127.0.0.1"
	return cfg, nil
}
