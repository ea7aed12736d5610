package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/readyconn/readyconn/alts"
	"github.com/readyconn/readyconn/framing"
	"github.com/readyconn/readyconn/integration/readygrpc"
	"github.com/readyconn/readyconn/readyreader"
	"github.com/readyconn/readyconn/tlsconn"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// readyEnd is the readyconn counterpart of bufioEnd: a readyreader.Buffered
// with the same 32 KiB read size, which waits without a buffer and gives
// its buffer back to the pool as soon as it runs empty.
type readyEnd struct {
	rawEnd
	rr readyreader.Reader
	br *readyreader.Buffered
}

func newReady(e *env, c net.Conn, _ bool) (endpoint, error) {
	rr := readyreader.New(c)
	return &readyEnd{rawEnd: rawEnd{c: c, msg: e.message}, rr: rr, br: readyreader.NewBuffered(rr, 32<<10, e.pool)}, nil
}

func (r *readyEnd) recv() error {
	_, err := r.br.Discard(len(r.msg))
	return err
}

// release gives back a buffer still holding unread bytes, if any.
func (r *readyEnd) release() { r.br.Reset(r.rr) }

// frameSpec is the framing mode's wire format for messages of msg bytes: a
// 4-byte big-endian length counting the payload, the most common layout
// there is.
func frameSpec(msg int) framing.Spec {
	return framing.Spec{LengthSize: 4, MaxFrameSize: max(1<<20, 4+msg)}
}

// framingEnd reads frames with a framing.Reader over the bare socket and
// writes them with a framing.Writer, both on the mode's pool.
type framingEnd struct {
	r   *framing.Reader
	w   *framing.Writer
	msg []byte
}

func newFraming(e *env, c net.Conn, _ bool) (endpoint, error) {
	spec := frameSpec(len(e.message))
	r, err := framing.NewReader(c, spec, framing.WithPool(e.pool))
	if err != nil {
		return nil, err
	}
	w, err := framing.NewWriter(c, spec, framing.WithPool(e.pool))
	if err != nil {
		return nil, err
	}
	return &framingEnd{r: r, w: w, msg: e.message}, nil
}

func (f *framingEnd) recv() error {
	fr, err := f.r.ReadFrame()
	if err != nil {
		return err
	}
	n := fr.Len()
	fr.Release()
	if want := 4 + len(f.msg); n != want {
		return fmt.Errorf("frame of %d bytes, want %d", n, want)
	}
	return nil
}

func (f *framingEnd) send() error { return f.w.WriteFrame(f.msg) }

// release gives back anything the Reader still holds once the end stops.
func (f *framingEnd) release() { f.r.Release() }

// altsEnd is an alts.Conn (TLS 1.3 handshake, then ALTS records) read into
// a small application buffer.
type altsEnd struct {
	c   *alts.Conn
	msg []byte
	buf [appBufLen]byte
}

func newALTS(e *env, c net.Conn, client bool) (endpoint, error) {
	cfg, err := e.tlsConfigs()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ac *alts.Conn
	if client {
		ac, err = alts.ClientContext(ctx, c, cfg.client, alts.WithPool(e.pool))
	} else {
		ac, err = alts.ServerContext(ctx, c, cfg.server, alts.WithPool(e.pool))
	}
	if err != nil {
		return nil, err
	}
	// The alts.Conn owns c; closing it also returns its buffers.
	e.track(ac)
	return &altsEnd{c: ac, msg: e.message}, nil
}

func (a *altsEnd) recv() error { return readN(a.c, a.buf[:], len(a.msg)) }

func (a *altsEnd) send() error {
	_, err := a.c.Write(a.msg)
	return err
}

// tlsconnEnd is a tlsconn.Conn (a crypto/tls handshake, then tlsconn's
// record layer) read into a small application buffer, like tlsEnd.
type tlsconnEnd struct {
	c   *tlsconn.Conn
	msg []byte
	buf [appBufLen]byte
}

func newTLSConn(e *env, c net.Conn, client bool) (endpoint, error) {
	cfg, err := e.tlsConfigs()
	if err != nil {
		return nil, err
	}
	var tc *tlsconn.Conn
	if client {
		tc = tlsconn.Client(c, cfg.client, tlsconn.WithPool(e.pool))
	} else {
		tc = tlsconn.Server(c, cfg.server, tlsconn.WithPool(e.pool))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	if tc.Pinning() {
		return nil, fmt.Errorf("tlsconn fell back to crypto/tls: %v", tc.PinningReason())
	}
	e.track(tc)
	return &tlsconnEnd{c: tc, msg: e.message}, nil
}

func (t *tlsconnEnd) recv() error { return readN(t.c, t.buf[:], len(t.msg)) }

func (t *tlsconnEnd) send() error {
	_, err := t.c.Write(t.msg)
	return err
}

// grpcReadyconn is gRPC over readygrpc.NewCredentials: a TLS 1.3 handshake,
// then ALTS records from package alts, whose connection gRPC reads through
// ReadOnReady, on the mode's pool.
func grpcReadyconn(e *env) (grpcSetup, error) {
	cfg, err := e.tlsConfigs()
	if err != nil {
		return grpcSetup{}, err
	}
	return grpcSetup{
		server: readygrpc.NewCredentials(cfg.server, alts.WithPool(e.pool)),
		client: readygrpc.NewCredentials(cfg.client, alts.WithPool(e.pool)),
	}, nil
}

// grpcTLSConn is gRPC over readygrpc.NewTLS at both ends: crypto/tls's
// handshake, then tlsconn's record layer, read by gRPC through ReadOnReady.
// NewTLS, like grpc's credentials.NewTLS, takes no pool: its connections
// use bufferpool.Default().
func grpcTLSConn(e *env) (grpcSetup, error) {
	cfg, err := e.tlsConfigs()
	if err != nil {
		return grpcSetup{}, err
	}
	return grpcSetup{server: readygrpc.NewTLS(cfg.server), client: readygrpc.NewTLS(cfg.client)}, nil
}

// grpcTLSConnServer is a readygrpc.NewTLS server with stock gRPC TLS
// clients: the saving a server operator gets without touching the clients.
func grpcTLSConnServer(e *env) (grpcSetup, error) {
	cfg, err := e.tlsConfigs()
	if err != nil {
		return grpcSetup{}, err
	}
	return grpcSetup{server: readygrpc.NewTLS(cfg.server), client: credentials.NewTLS(cfg.client)}, nil
}

// grpcPlaintextReadygrpc is plaintext gRPC through readygrpc.Listener and
// Dialer (on Linux grpc-go reads bare sockets without pinning already, and
// they pass the socket through; elsewhere they add ReadOnReady).
func grpcPlaintextReadygrpc(*env) (grpcSetup, error) {
	return grpcSetup{
		server:   insecure.NewCredentials(),
		client:   insecure.NewCredentials(),
		listener: readygrpc.Listener,
		dialOpts: []grpc.DialOption{grpc.WithContextDialer(readygrpc.Dialer(nil, "tcp"))},
	}, nil
}
