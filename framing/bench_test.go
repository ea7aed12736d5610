package framing

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"testing"

	"github.com/readyconn/readyconn/bufferpool"
)

// loopIO is an io.Reader serving the same stream forever, for the bufio baseline.
type loopIO struct {
	data []byte
	off  int
}

func (c *loopIO) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// BenchmarkReadFrameInMemory measures the per-frame cost of ReadFrame+Release,
// ReadFrameInto and a bufio.Reader+io.ReadFull baseline without a socket, so
// that syscall noise does not hide it.
func BenchmarkReadFrameInMemory(b *testing.B) {
	for _, size := range []int{64, 1024, 64 << 10} {
		frame := make([]byte, 4+size)
		binary.BigEndian.PutUint32(frame, uint32(size))
		stream := bytes.Repeat(frame, max(1, (1<<20)/len(frame)))
		b.Run(fmt.Sprintf("framing/%d", size), func(b *testing.B) {
			r, _ := NewReader(&loopConn{data: stream}, Spec{LengthSize: 4, Strip: 4, MaxFrameSize: 1 << 20}, WithPool(bufferpool.Default()))
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for range b.N {
				f, err := r.ReadFrame()
				if err != nil {
					b.Fatal(err)
				}
				f.Release()
			}
		})
		b.Run(fmt.Sprintf("into/%d", size), func(b *testing.B) {
			r, _ := NewReader(&loopConn{data: stream}, Spec{LengthSize: 4, Strip: 4, MaxFrameSize: 1 << 20}, WithPool(bufferpool.Default()))
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			dst := make([]byte, 0, size)
			for range b.N {
				var err error
				dst, err = r.ReadFrameInto(dst)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("bufio/%d", size), func(b *testing.B) {
			br := bufio.NewReaderSize(&loopIO{data: stream}, 32<<10)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			var hdr [4]byte
			buf := make([]byte, 0, size)
			for range b.N {
				io.ReadFull(br, hdr[:])
				n := int(binary.BigEndian.Uint32(hdr[:]))
				if cap(buf) < n {
					buf = make([]byte, n)
				}
				buf = buf[:n]
				io.ReadFull(br, buf)
			}
		})
	}
}

// BenchmarkWriteFrameInMemory measures the per-frame cost of WriteFrame to
// a writer that is not a socket (io.Discard), without system calls: one
// Write from a pooled buffer up to 32 KiB, Writes of up to 32 KiB above.
func BenchmarkWriteFrameInMemory(b *testing.B) {
	for _, size := range []int{64, 1024, 64 << 10, 4 << 20} {
		b.Run(fmt.Sprintf("framing/%d", size), func(b *testing.B) {
			w, _ := NewWriter(io.Discard, Spec{LengthSize: 4, Strip: 4, MaxFrameSize: 8 << 20}, WithPool(bufferpool.Default()))
			payload := make([]byte, size)
			b.SetBytes(int64(4 + size))
			b.ReportAllocs()
			for range b.N {
				if err := w.WriteFrame(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
