package readyreader_test

import (
	"fmt"
	"io"
	"net"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/readyreader"
)

// ExampleNew reads from a TCP loopback connection. On Unix the Reader waits
// for the socket without holding a buffer; the buffer it returns is sized to
// the bytes that arrived and goes back to the pool once they are used.
func ExampleNew() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		c.Write([]byte("hello, ready reader"))
		c.Close()
	}()
	conn, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	pool := bufferpool.NewTiered()
	rd := readyreader.New(conn)
	var msg []byte
	for {
		buf, n, err := rd.ReadOnReady(32*1024, pool)
		if n > 0 {
			msg = append(msg, (*buf)[:n]...)
			pool.Put(buf) // done with the bytes: the buffer goes back
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
	}
	fmt.Printf("%s\n", msg)
	fmt.Println("in use after reading:", pool.Stats().InUseBytes)
	// Output:
	// hello, ready reader
	// in use after reading: 0
}

// ExampleNewBuffered parses a length-prefixed message with Peek, Discard and
// ReadByte. The Buffered reader gives its buffer back whenever it runs empty.
func ExampleNewBuffered() {
	client, server := net.Pipe() // net.Pipe goes through the blocking fallback
	go func() {
		client.Write([]byte{5, 'h', 'e', 'l', 'l', 'o', '!'})
		client.Close()
	}()
	defer server.Close()

	pool := bufferpool.NewTiered()
	br := readyreader.NewBuffered(readyreader.New(server), 4096, pool)
	length, err := br.ReadByte()
	if err != nil {
		panic(err)
	}
	body, err := br.Peek(int(length)) // valid until the next call on br
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", body)
	br.Discard(int(length))
	last, _ := br.ReadByte()
	fmt.Printf("%q\n", last)
	fmt.Println("in use when empty:", pool.Stats().InUseBytes)
	_, err = br.ReadByte()
	fmt.Println(err)
	// Output:
	// "hello"
	// '!'
	// in use when empty: 0
	// EOF
}

// ExampleBuffered_ReadString reads a line-based protocol with the methods
// of a bufio.Reader; between lines, and while it waits for the next one,
// the Buffered holds no buffer.
func ExampleBuffered_ReadString() {
	client, server := net.Pipe()
	go func() {
		client.Write([]byte("HELLO 3\r\nfoo bar 42\n"))
		client.Close()
	}()
	defer server.Close()

	pool := bufferpool.NewTiered()
	br := readyreader.NewBuffered(readyreader.New(server), 4096, pool)
	line, _, err := br.ReadLine() // valid until the next call on br
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", line)
	var a, b string
	var n int
	fmt.Fscan(br, &a, &b, &n) // Buffered is an io.RuneScanner
	fmt.Println(a, b, n)
	rest, err := br.ReadString('\n')
	fmt.Printf("%q %v\n", rest, err)
	fmt.Println("in use when empty:", pool.Stats().InUseBytes)
	_, err = br.ReadString('\n')
	fmt.Println(err)
	// Output:
	// "HELLO 3"
	// foo bar 42
	// "\n" <nil>
	// in use when empty: 0
	// EOF
}
