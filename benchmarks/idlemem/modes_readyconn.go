package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/readyconn/readyconn/alts"
	"github.com/readyconn/readyconn/framing"
	"github.com/readyconn/readyconn/integration/readygrpc"
	"github.com/readyconn/readyconn/readyreader"
	"github.com/readyconn/readyconn/tlsconn"
	"google.golang.org/grpc/credentials"
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
	return &readyEnd{rawEnd: rawEnd{c: c}, rr: rr, br: readyreader.NewBuffered(rr, 32<<10, e.pool)}, nil
}

func (r *readyEnd) recv() error {
	_, err := r.br.Discard(msgLen)
	return err
}

// release gives back a buffer still holding unread bytes, if any.
func (r *readyEnd) release() { r.br.Reset(r.rr) }

// frameSpec is the framing mode's wire format: a 4-byte big-endian length
// counting the payload, the most common layout there is.
var frameSpec = framing.Spec{LengthSize: 4, MaxFrameSize: 1 << 20}

// framingEnd reads frames with a framing.Reader over the bare socket and
// writes them with a framing.Writer, both on the mode's pool.
type framingEnd struct {
	r *framing.Reader
	w *framing.Writer
}

func newFraming(e *env, c net.Conn, _ bool) (endpoint, error) {
	r, err := framing.NewReader(c, frameSpec, framing.WithPool(e.pool))
	if err != nil {
		return nil, err
	}
	w, err := framing.NewWriter(c, frameSpec, framing.WithPool(e.pool))
	if err != nil {
		return nil, err
	}
	return &framingEnd{r: r, w: w}, nil
}

func (f *framingEnd) recv() error {
	fr, err := f.r.ReadFrame()
	if err != nil {
		return err
	}
	n := fr.Len()
	fr.Release()
	if n != frameSpec.LengthSize+msgLen {
		return fmt.Errorf("frame of %d bytes, want %d", n, frameSpec.LengthSize+msgLen)
	}
	return nil
}

func (f *framingEnd) send() error { return f.w.WriteFrame(message) }

// release gives back anything the Reader still holds once the end stops.
func (f *framingEnd) release() { f.r.Release() }

// altsEnd is an alts.Conn (TLS 1.3 handshake, then ALTS records) read into
// a small application buffer.
type altsEnd struct {
	c   *alts.Conn
	buf [msgLen]byte
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
	return &altsEnd{c: ac}, nil
}

func (a *altsEnd) recv() error {
	for got := 0; got < msgLen; {
		n, err := a.c.Read(a.buf[got:])
		got += n
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *altsEnd) send() error {
	_, err := a.c.Write(message)
	return err
}

// tlsconnEnd is a tlsconn.Conn (a crypto/tls handshake, then tlsconn's
// record layer) read into a small application buffer, like tlsEnd.
type tlsconnEnd struct {
	c   *tlsconn.Conn
	buf [msgLen]byte
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
	return &tlsconnEnd{c: tc}, nil
}

func (t *tlsconnEnd) recv() error {
	_, err := io.ReadFull(t.c, t.buf[:])
	return err
}

func (t *tlsconnEnd) send() error {
	_, err := t.c.Write(message)
	return err
}

// grpcReadyconn is gRPC over readygrpc.NewCredentials: a TLS 1.3 handshake,
// then ALTS records from package alts, whose connection gRPC reads through
// ReadOnReady, on the mode's pool.
func grpcReadyconn(e *env) (credentials.TransportCredentials, credentials.TransportCredentials, error) {
	cfg, err := e.tlsConfigs()
	if err != nil {
		return nil, nil, err
	}
	return readygrpc.NewCredentials(cfg.server, alts.WithPool(e.pool)),
		readygrpc.NewCredentials(cfg.client, alts.WithPool(e.pool)), nil
}
