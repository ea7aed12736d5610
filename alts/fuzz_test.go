package alts

import (
	"bytes"
	"io"
	"testing"

	"github.com/readyconn/readyconn/bufferpool"
)

// FuzzServerRead feeds arbitrary bytes, in arbitrary pieces, to a
// server-side Conn. It must never panic, never hold a buffer once it has
// failed or reached the end, and every byte it returns must be plaintext of
// a frame that the independent reference decoder authenticates, in order:
// the output is always a prefix of the reference decoding.
func FuzzServerRead(f *testing.F) {
	ref := refCipher{AES128GCM, testKey128}
	f0 := ref.frame(f, ClientSide, 0, []byte("frame zero"))
	f1 := ref.frame(f, ClientSide, 1, []byte("frame one, a little longer"))
	f2 := ref.frame(f, ClientSide, 2, nil)
	f3 := ref.frame(f, ClientSide, 3, bytes.Repeat([]byte("z"), 5000))
	valid := bytes.Join([][]byte{f0, f1, f2, f3}, nil)
	f.Add(valid, uint8(0), uint16(7))
	f.Add(valid, uint8(1), uint16(1))
	f.Add(valid[:len(valid)-3], uint8(5), uint16(1000))
	f.Add(append(bytes.Clone(f0), f0...), uint8(0), uint16(100))
	f.Add(append(bytes.Clone(f1), f0...), uint8(0), uint16(100))
	f.Add(header(0, 6), uint8(0), uint16(1))
	f.Add(header(3, 6), uint8(0), uint16(1))
	f.Add(header(MaxFrameSize+1, 6), uint8(0), uint16(1))
	f.Add(append(header(30, 7), make([]byte, 30)...), uint8(2), uint16(3))
	f.Add(append(bytes.Clone(f0), header(0xffffffff, 6)...), uint8(0), uint16(64))
	f.Add([]byte{}, uint8(0), uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, split uint8, readSize uint16) {
		want := ref.decode(t, ClientSide, 0, data)
		pool := bufferpool.NewTiered(bufferpool.WithDebug())
		sizes := []int{int(split) + 1, int(split)*97 + 1, 1 << 16}
		c, err := newConnUnguarded(&bufConn{r: &chunkReader{data: data, sizes: sizes}}, ServerSide, AES128GCM, testKey128, WithPool(pool))
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(c, int(readSize)+1)
		if err == nil {
			t.Fatal("readAll ended without error")
		}
		if !bytes.HasPrefix(want, got) {
			t.Fatalf("returned %d bytes that are not a prefix of the %d authenticated bytes", len(got), len(want))
		}
		if err == io.EOF && !bytes.Equal(got, want) {
			t.Fatalf("clean EOF after %d of %d authenticated bytes", len(got), len(want))
		}
		if n := pool.Stats().InUseBytes; n != 0 {
			t.Fatalf("%d bytes still held after %v", n, err)
		}
	})
}
