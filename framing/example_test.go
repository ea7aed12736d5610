package framing_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"log"

	"github.com/readyconn/readyconn/framing"
)

// Reading PostgreSQL backend messages: a type byte, then a length that counts
// itself. Strip the 5-byte header to get just the message body. A net.Conn
// works the same way, without holding a buffer while it is idle.
func ExampleNewReader() {
	stream := []byte("Z\x00\x00\x00\x05I" + "C\x00\x00\x00\x0dSELECT 1\x00")
	spec := framing.PostgreSQLMessage
	r, err := framing.NewReader(bytes.NewReader(stream), spec)
	if err != nil {
		log.Fatal(err)
	}
	for {
		f, err := r.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		b := f.Bytes()
		fmt.Printf("%c %q\n", b[0], b[5:])
		f.Release() // b must not be used after this
	}
	// Output:
	// Z "I"
	// C "SELECT 1\x00"
}

// Writing gRPC length-prefixed messages: the parts are the frame without its
// length field, here the compressed-flag byte and the message.
func ExampleNewWriter() {
	var out bytes.Buffer
	w, err := framing.NewWriter(&out, framing.GRPCMessage)
	if err != nil {
		log.Fatal(err)
	}
	if err := w.WriteFrame([]byte{0}, []byte("hi")); err != nil {
		log.Fatal(err)
	}
	if err := w.WriteFrame([]byte{0}); err != nil { // empty message
		log.Fatal(err)
	}
	fmt.Println(hex.EncodeToString(out.Bytes()))
	// Output: 000000000268690000000000
}

// Batching many small frames: the buffer comes from the pool on the first
// frame and goes back on Flush.
func ExampleNewBufferedWriter() {
	var out bytes.Buffer
	w, err := framing.NewBufferedWriter(&out, framing.MQTT, 0)
	if err != nil {
		log.Fatal(err)
	}
	for range 3 {
		w.WriteFrame([]byte{0xc0}) // PINGREQ
	}
	fmt.Println(out.Len(), w.Buffered())
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(hex.EncodeToString(out.Bytes()))
	// Output:
	// 0 6
	// c000c000c000
}

// ReadFrameInto copies each frame into a buffer the caller manages.
func ExampleReader_ReadFrameInto() {
	stream := []byte("\x03abc\x01d")
	r, _ := framing.NewReader(bytes.NewReader(stream), framing.Spec{LengthSize: 1, Strip: 1})
	buf := make([]byte, 0, 64)
	for {
		var err error
		buf, err = r.ReadFrameInto(buf)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s\n", buf)
	}
	// Output:
	// abc
	// d
	// EOF
}
