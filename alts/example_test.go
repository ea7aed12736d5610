package alts_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"

	"github.com/readyconn/readyconn/alts"
)

// Two ends of a connection run the record protocol with a key agreed on by
// some handshake (here a random one; both ends are in this process, so the
// client gets a copy: NewConn clears the key it is given). A key is for one
// connection only.
func ExampleNewConn() {
	key := make([]byte, 44) // AES128GCMRekey takes a 44-byte key
	rand.Read(key)
	a, b := net.Pipe()
	client, err := alts.NewConn(a, alts.ClientSide, alts.AES128GCMRekey, bytes.Clone(key))
	if err != nil {
		panic(err)
	}
	server, err := alts.NewConn(b, alts.ServerSide, alts.AES128GCMRekey, key)
	if err != nil {
		panic(err)
	}
	defer client.Close()
	defer server.Close()

	go func() {
		// Echo one message back, upper-cased.
		buf := make([]byte, 5)
		if _, err := io.ReadFull(server, buf); err != nil {
			return
		}
		for i, c := range buf {
			buf[i] = c - 'a' + 'A'
		}
		server.Write(buf)
	}()

	if _, err := client.Write([]byte("hello")); err != nil {
		panic(err)
	}
	reply := make([]byte, 5)
	if _, err := io.ReadFull(client, reply); err != nil {
		panic(err)
	}
	fmt.Println(string(reply))
	// Output: HELLO
}
