package alts_test

import (
	"fmt"
	"io"
	"net"

	"github.com/readyconn/readyconn/alts"
)

// Two ends of a connection run the record protocol with a key agreed on by
// some handshake (here a fixed one).
func ExampleNewConn() {
	key := make([]byte, 44) // AES128GCMRekey takes a 44-byte key
	for i := range key {
		key[i] = byte(i)
	}
	a, b := net.Pipe()
	client, err := alts.NewConn(a, alts.ClientSide, alts.AES128GCMRekey, key)
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
