// Package testnet makes connected pairs of loopback connections for tests
// and benchmarks.
package testnet

import (
	"net"
	"path/filepath"
	"testing"
)

// TCPPair returns the two ends of a TCP connection over 127.0.0.1: client
// is the dialing end, server the accepted one. Both are closed when the
// test ends; closing them earlier is fine. It stops the test with Fatal if
// the connection cannot be made.
func TCPPair(tb testing.TB) (client, server *net.TCPConn) {
	tb.Helper()
	c, s := pair(tb, "tcp", "127.0.0.1:0")
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// UnixPair is TCPPair for a unix stream socket in a temporary directory of
// the test.
func UnixPair(tb testing.TB) (client, server *net.UnixConn) {
	tb.Helper()
	c, s := pair(tb, "unix", filepath.Join(tb.TempDir(), "s"))
	return c.(*net.UnixConn), s.(*net.UnixConn)
}

func pair(tb testing.TB, network, addr string) (client, server net.Conn) {
	tb.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		ln.Close()
		<-ch
		tb.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		client.Close()
		tb.Fatal(r.err)
	}
	tb.Cleanup(func() {
		client.Close()
		r.c.Close()
	})
	return client, r.c
}
