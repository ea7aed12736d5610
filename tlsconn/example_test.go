package tlsconn_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testcert"
	"github.com/readyconn/readyconn/tlsconn"
)

// certificates returns a server and a client configuration for the
// examples: in a real program, load a certificate (tls.LoadX509KeyPair) and
// trust its CA.
func certificates() (server, client *tls.Config) {
	p, err := testcert.New("example")
	if err != nil {
		log.Fatal(err)
	}
	return p.ServerConfig(false), p.ClientConfig(false)
}

// The switch from crypto/tls is a rename: tls.Listen → tlsconn.Listen,
// tls.Dial → tlsconn.Dial, with the same *tls.Config. An idle connection
// then holds no read buffer.
func Example() {
	serverConfig, clientConfig := certificates()

	ln, err := tlsconn.Listen("tcp", "127.0.0.1:0", serverConfig)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept() // a *tlsconn.Conn; the handshake runs on first use
		if err != nil {
			return
		}
		defer conn.Close()
		line, _ := bufio.NewReader(conn).ReadString('\n')
		fmt.Fprintf(conn, "echo: %s", line)
	}()

	conn, err := tlsconn.Dial("tcp", ln.Addr().String(), clientConfig)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintln(conn, "hello")
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	state := conn.ConnectionState()
	fmt.Print(reply)
	fmt.Println(tls.VersionName(state.Version), "pinning:", conn.Pinning())
	// Output:
	// echo: hello
	// TLS 1.3 pinning: false
}

// Client and Server wrap connections you already have, as tls.Client and
// tls.Server do.
func ExampleServer() {
	serverConfig, clientConfig := certificates()
	clientConfig.ServerName = "localhost"
	a, b := net.Pipe()
	go func() {
		s := tlsconn.Server(b, serverConfig)
		defer s.Close()
		io.Copy(s, s) // echo
	}()
	c := tlsconn.Client(a, clientConfig)
	defer c.Close()
	if err := c.Handshake(); err != nil {
		log.Fatal(err)
	}
	fmt.Fprint(c, "ping")
	buf := make([]byte, 4)
	io.ReadFull(c, buf)
	fmt.Println(string(buf))
	// Output: ping
}

// ReadOnReady waits without holding a buffer and then takes one from the
// caller's pool, sized to what arrived: the method gRPC's HTTP/2 transport
// and readyreader.Buffered read through.
func ExampleConn_ReadOnReady() {
	serverConfig, clientConfig := certificates()
	clientConfig.ServerName = "localhost"
	a, b := net.Pipe()
	go func() {
		s := tlsconn.Server(b, serverConfig)
		defer s.Close()
		s.Write([]byte("a small message"))
		io.Copy(io.Discard, s)
	}()
	c := tlsconn.Client(a, clientConfig)
	defer c.Close()

	pool := bufferpool.NewTiered()
	buf, n, err := c.ReadOnReady(32<<10, pool) // no buffer held while waiting
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q in a %d-byte buffer\n", (*buf)[:n], cap(*buf))
	pool.Put(buf) // the caller owns buf until it puts it back
	// Output: "a small message" in a 64-byte buffer
}
