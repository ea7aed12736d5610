package alts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/internal/testnet"
)

// TestHandshakeContextReachesConfigForClient checks that the context of
// ServerContext reaches crypto/tls: GetConfigForClient sees it.
func TestHandshakeContextReachesConfigForClient(t *testing.T) {
	a, _ := hsPKIs(t)
	type ctxKey struct{}
	ctx := context.WithValue(context.Background(), ctxKey{}, "the handshake's")
	var seen atomic.Value
	scfg := a.ServerConfig(false)
	scfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		seen.Store(fmt.Sprint(hello.Context() != nil && hello.Context().Value(ctxKey{}) != nil))
		return nil, nil
	}
	cc, sc := testnet.TCPPair(t)
	ch := make(chan hsResult, 1)
	go func() {
		s, err := ServerContext(ctx, sc, scfg)
		ch <- hsResult{s, err}
	}()
	c, err := Client(cc, hsClientConfig(a, false))
	require.NoError(t, err)
	defer c.Close()
	s := <-ch
	require.NoError(t, s.err)
	defer s.conn.Close()
	require.Equal(t, "true", seen.Load(), "GetConfigForClient did not see the handshake's context")
}

// TestGetConfigForClientEnforced checks the wrapper that Server puts around
// GetConfigForClient: whatever config the callback returns, the handshake is
// TLS 1.3, negotiates ALPN and sends no session ticket; the returned config
// is not modified, and its own GetConfigForClient is not called.
func TestGetConfigForClientEnforced(t *testing.T) {
	a, _ := hsPKIs(t)
	var inner atomic.Int32
	weak := a.ServerConfig(false)
	weak.MinVersion = tls.VersionTLS10
	weak.MaxVersion = tls.VersionTLS12
	weak.NextProtos = []string{"h2"}
	weak.SessionTicketsDisabled = false
	weak.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		inner.Add(1)
		return nil, errors.New("the returned config's own GetConfigForClient ran")
	}
	var calls atomic.Int32
	scfg := a.ServerConfig(false)
	scfg.Certificates = nil // only the returned config has one
	scfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		calls.Add(1)
		return weak, nil
	}
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		ccfg := hsClientConfig(a, false)
		ccfg.ClientSessionCache = cache
		c, s := hsPair(t, ccfg, scfg)
		require.NoError(t, c.err)
		require.NoError(t, s.err)
		for _, st := range []tls.ConnectionState{c.conn.ConnectionState(), s.conn.ConnectionState()} {
			assert.Equal(t, uint16(tls.VersionTLS13), st.Version)
			assert.Equal(t, ALPN, st.NegotiatedProtocol)
			assert.False(t, st.DidResume, "connection %d resumed: a ticket was sent", i)
		}
		// A ticket on the socket would be read as a corrupt first frame.
		hsEcho(t, c.conn, s.conn)
	}
	assert.EqualValues(t, 2, calls.Load())
	assert.Zero(t, inner.Load())
	// The callback's config is as it was.
	assert.Equal(t, uint16(tls.VersionTLS12), weak.MaxVersion)
	assert.Equal(t, uint16(tls.VersionTLS10), weak.MinVersion)
	assert.Equal(t, []string{"h2"}, weak.NextProtos)
	assert.False(t, weak.SessionTicketsDisabled)
	assert.NotNil(t, weak.GetConfigForClient)
}

// TestGetConfigForClientTLS12Peer checks that a TLS 1.2 client fails
// against a server whose GetConfigForClient allows TLS 1.2.
func TestGetConfigForClientTLS12Peer(t *testing.T) {
	a, _ := hsPKIs(t)
	weak := a.ServerConfig(false)
	weak.MaxVersion = tls.VersionTLS12
	scfg := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return weak, nil }}
	cc, sc := testnet.TCPPair(t)
	cc.SetDeadline(time.Now().Add(hsTimeout))
	sc.SetDeadline(time.Now().Add(hsTimeout))
	peerErr := make(chan error, 1)
	go func() {
		tc := tls.Client(cc, &tls.Config{RootCAs: a.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12, NextProtos: []string{ALPN}})
		peerErr <- tc.Handshake()
	}()
	_, err := Server(sc, scfg)
	require.ErrorIs(t, err, ErrHandshake)
	require.Error(t, <-peerErr)
}

// TestGetConfigForClientErrorAndNil checks that an error from the callback
// fails the handshake with it, and that a nil config keeps the outer one
// (with the same rules applied).
func TestGetConfigForClientErrorAndNil(t *testing.T) {
	a, _ := hsPKIs(t)
	errNo := errors.New("no config for you")
	scfg := a.ServerConfig(false)
	scfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, errNo }
	c, s := hsPair(t, hsClientConfig(a, false), scfg)
	require.ErrorIs(t, s.err, errNo)
	require.ErrorIs(t, s.err, ErrHandshake)
	require.Error(t, c.err)

	scfg = a.ServerConfig(false)
	scfg.NextProtos = []string{"h2"}
	scfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, nil }
	c, s = hsPair(t, hsClientConfig(a, false), scfg)
	require.NoError(t, c.err)
	require.NoError(t, s.err)
	assert.Equal(t, ALPN, s.conn.ConnectionState().NegotiatedProtocol)
	hsEcho(t, c.conn, s.conn)
}

// TestServerConfigNotModified checks that Client and Server leave the
// caller's configs as they were.
func TestServerConfigNotModified(t *testing.T) {
	a, _ := hsPKIs(t)
	scfg := a.ServerConfig(false)
	scfg.NextProtos = []string{"h2"}
	ccfg := hsClientConfig(a, false)
	ccfg.NextProtos = []string{"h2"}
	c, s := hsPair(t, ccfg, scfg)
	require.NoError(t, c.err)
	require.NoError(t, s.err)
	assert.Equal(t, []string{"h2"}, scfg.NextProtos)
	assert.Equal(t, []string{"h2"}, ccfg.NextProtos)
	assert.Zero(t, scfg.MinVersion)
	assert.False(t, scfg.SessionTicketsDisabled)
	assert.Zero(t, ccfg.MinVersion)
}

// TestHandshakeContextCause checks that a handshake ended by a context
// cancelled with a cause reports both ctx.Err() and the cause.
func TestHandshakeContextCause(t *testing.T) {
	a, _ := hsPKIs(t)
	errWhy := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	_, sc := testnet.TCPPair(t) // the client never speaks
	errc := make(chan error, 1)
	go func() {
		_, err := ServerContext(ctx, sc, a.ServerConfig(false))
		errc <- err
	}()
	testnet.WaitParked(t, "alts.runHandshake")
	cancel(errWhy)
	err := <-errc
	require.ErrorIs(t, err, ErrHandshake)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, errWhy)
}
