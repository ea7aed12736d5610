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
