package alts

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/readyconn/readyconn/internal/testnet"
)

// TestNetConn runs golang.org/x/net/nettest.TestConn, the conformance suite
// of net.Conn, on every kind of Conn this package returns: NewConn with both
// record protocols, the ends of a Client/Server handshake, and Dial with a
// Listener's Accept; over loopback TCP (the non-pinning path) and over
// net.Pipe (the blocking fallback, whose writes complete only as the peer
// reads, so that timeouts cut frames midway). It includes PastTimeout,
// FutureTimeout and ConcurrentMethods, which crypto/tls fails because a
// timed-out Write breaks a *tls.Conn for good.
func TestNetConn(t *testing.T) {
	transports := []struct {
		name string
		pair func(t *testing.T) (net.Conn, net.Conn)
	}{
		{"tcp", func(t *testing.T) (net.Conn, net.Conn) { return testnet.TCPPair(t) }},
		{"pipe", func(*testing.T) (net.Conn, net.Conn) { return net.Pipe() }},
	}
	for _, tr := range transports {
		for _, protocol := range protocols {
			t.Run("NewConn/"+protocol+"/"+tr.name, func(t *testing.T) {
				nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
					a, b := tr.pair(t)
					key := randomKey(t, protocol)
					cl, err := NewConn(a, ClientSide, protocol, bytes.Clone(key))
					if err != nil {
						return nil, nil, nil, err
					}
					sv, err := NewConn(b, ServerSide, protocol, key)
					if err != nil {
						return nil, nil, nil, err
					}
					return cl, sv, func() { cl.Close(); sv.Close() }, nil
				})
			})
		}
		t.Run("handshake/"+tr.name, func(t *testing.T) {
			pki, _ := hsPKIs(t)
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				a, b := tr.pair(t)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				ch := make(chan hsResult, 1)
				go func() {
					s, err := ServerContext(ctx, b, pki.ServerConfig(true))
					ch <- hsResult{s, err}
				}()
				cl, err := ClientContext(ctx, a, hsClientConfig(pki, true))
				s := <-ch
				if err == nil {
					err = s.err
				}
				if err != nil {
					a.Close()
					b.Close()
					return nil, nil, nil, err
				}
				return cl, s.conn, func() { cl.Close(); s.conn.Close() }, nil
			})
		})
	}
	t.Run("Listen", func(t *testing.T) {
		pki, _ := hsPKIs(t)
		ln, err := Listen("tcp", "127.0.0.1:0", pki.ServerConfig(false))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
			ch := make(chan hsResult, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					ch <- hsResult{nil, err}
					return
				}
				ch <- hsResult{c.(*Conn), nil}
			}()
			cl, err := Dial("tcp", ln.Addr().String(), hsClientConfig(pki, false))
			s := <-ch
			if err == nil {
				err = s.err
			}
			if err != nil {
				if cl != nil {
					cl.Close()
				}
				if s.conn != nil {
					s.conn.Close()
				}
				return nil, nil, nil, err
			}
			return cl, s.conn, func() { cl.Close(); s.conn.Close() }, nil
		})
	})
}
