package benchmarks

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/readyconn/readyconn/benchmarks/internal/cputime"
	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/framing"
)

// frSpec is the frame format of every framing benchmark: a 4-byte
// big-endian length counting the payload, stripped from what the reader
// returns.
var frSpec = framing.Spec{LengthSize: 4, Strip: 4, MaxFrameSize: 1 << 20}

var frSizes = []int{64, 1 << 10, 64 << 10}

// frTCPPair returns both ends of a loopback TCP connection.
func frTCPPair(b *testing.B) (client, server net.Conn) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s := <-acc
	if s == nil {
		b.Fatal("accept failed")
	}
	return c, s
}

// frFeed writes frames of size payload bytes to c until it fails, and
// closes done when it stops.
func frFeed(c net.Conn, size int, done chan<- struct{}) {
	defer close(done)
	frame := make([]byte, 4+size)
	binary.BigEndian.PutUint32(frame, uint32(size))
	for i := range frame[4:] {
		frame[4+i] = byte(i)
	}
	chunk := frame
	for len(chunk) < 256<<10 {
		chunk = append(chunk, frame...)
	}
	for {
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}

// BenchmarkFrameRead reads frames over TCP loopback with framing.Reader
// (ReadFrame + Release, and ReadFrameInto) and with the usual alternative,
// a 32 KiB bufio.Reader and io.ReadFull into a reused buffer, with the same
// Spec.
func BenchmarkFrameRead(b *testing.B) {
	impls := []struct {
		name string
		run  func(b *testing.B, c net.Conn, size int)
	}{
		{"framing", func(b *testing.B, c net.Conn, size int) {
			r, err := framing.NewReader(c, frSpec, framing.WithPool(bufferpool.Default()))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			ct := cputime.Start(b)
			for range b.N {
				f, err := r.ReadFrame()
				if err != nil || f.Len() != size {
					b.Fatal(err, f.Len())
				}
				f.Release()
			}
			ct.Stop()
			b.StopTimer()
			r.Release()
		}},
		{"framing-into", func(b *testing.B, c net.Conn, size int) {
			r, err := framing.NewReader(c, frSpec)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, size)
			b.ResetTimer()
			ct := cputime.Start(b)
			for range b.N {
				buf, err = r.ReadFrameInto(buf)
				if err != nil || len(buf) != size {
					b.Fatal(err, len(buf))
				}
			}
			ct.Stop()
			b.StopTimer()
			r.Release()
		}},
		{"bufio", func(b *testing.B, c net.Conn, size int) {
			br := bufio.NewReaderSize(c, 32<<10)
			var hdr [4]byte
			buf := make([]byte, 0, size)
			b.ResetTimer()
			defer cputime.Start(b).Stop()
			for range b.N {
				if _, err := io.ReadFull(br, hdr[:]); err != nil {
					b.Fatal(err)
				}
				n := int(binary.BigEndian.Uint32(hdr[:]))
				if n > frSpec.MaxFrameSize-4 {
					b.Fatal("too large")
				}
				if cap(buf) < n {
					buf = make([]byte, n)
				}
				buf = buf[:n]
				if _, err := io.ReadFull(br, buf); err != nil {
					b.Fatal(err)
				}
			}
		}},
	}
	for _, impl := range impls {
		for _, size := range frSizes {
			b.Run(fmt.Sprintf("impl=%s/size=%d", impl.name, size), func(b *testing.B) {
				client, server := frTCPPair(b)
				done := make(chan struct{})
				go frFeed(client, size, done)
				b.SetBytes(int64(4 + size))
				b.ReportAllocs()
				impl.run(b, server, size)
				server.Close()
				client.Close()
				<-done
			})
		}
	}
}

// frDrain reads c until it fails and closes done.
func frDrain(c net.Conn, done chan<- struct{}) {
	defer close(done)
	io.Copy(io.Discard, c)
}

// BenchmarkFrameWrite writes one frame per call over TCP loopback, sent at
// once: framing.Writer against a 32 KiB bufio.Writer with Write(header),
// Write(payload), Flush. Both make the same system calls per frame: one
// write for 64 B and 1 KiB frames, and two of about 32 KiB for 64 KiB frames
// (bufio fills its buffer, then writes the rest directly; framing cuts the
// frame in two vectored writes).
func BenchmarkFrameWrite(b *testing.B) {
	frWriteBench(b, false)
}

// BenchmarkFrameWriteBatched writes frames that are sent when the buffer is
// full: framing.BufferedWriter against bufio.Writer, both 32 KiB.
func BenchmarkFrameWriteBatched(b *testing.B) {
	frWriteBench(b, true)
}

func frWriteBench(b *testing.B, batched bool) {
	// bufio-locked is the bufio baseline behind a sync.Mutex, which is what
	// it takes to share it between goroutines as framing's writers can be:
	// the lock costs two atomic operations per frame.
	for _, impl := range []string{"framing", "bufio", "bufio-locked"} {
		for _, size := range frSizes {
			b.Run(fmt.Sprintf("impl=%s/size=%d", impl, size), func(b *testing.B) {
				client, server := frTCPPair(b)
				done := make(chan struct{})
				go frDrain(server, done)
				payload := make([]byte, size)
				b.SetBytes(int64(4 + size))
				b.ReportAllocs()
				var write func() error
				var flush func() error
				switch {
				case impl == "framing" && !batched:
					w, err := framing.NewWriter(client, frSpec)
					if err != nil {
						b.Fatal(err)
					}
					write = func() error { return w.WriteFrame(payload) }
				case impl == "framing":
					w, err := framing.NewBufferedWriter(client, frSpec, 32<<10)
					if err != nil {
						b.Fatal(err)
					}
					write, flush = func() error { return w.WriteFrame(payload) }, w.Flush
				default:
					bw := bufio.NewWriterSize(client, 32<<10)
					var hdr [4]byte
					write = func() error {
						binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
						bw.Write(hdr[:])
						bw.Write(payload)
						if !batched {
							return bw.Flush()
						}
						return nil
					}
					flush = bw.Flush
					if impl == "bufio-locked" {
						var mu sync.Mutex
						unlocked := write
						write = func() error {
							mu.Lock()
							defer mu.Unlock()
							return unlocked()
						}
					}
				}
				b.ResetTimer()
				ct := cputime.Start(b)
				for range b.N {
					if err := write(); err != nil {
						b.Fatal(err)
					}
				}
				if flush != nil {
					if err := flush(); err != nil {
						b.Fatal(err)
					}
				}
				ct.Stop()
				b.StopTimer()
				client.Close()
				<-done
				server.Close()
			})
		}
	}
}

// frPlainWriter hides a connection's type, so that framing.Writer treats it
// as any io.Writer (as it does a *tls.Conn or a bufio.Writer).
type frPlainWriter struct{ w io.Writer }

func (p frPlainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }

// BenchmarkFrameWriteLarge writes one large frame per call over TCP
// loopback through a writer that is not a socket: framing.Writer against a
// 32 KiB bufio.Writer with Write(header), Write(payload), Flush. 4 MiB is
// above the default pool's largest class (1 MiB). B/op shows what a frame
// costs in allocations.
func BenchmarkFrameWriteLarge(b *testing.B) {
	for _, impl := range []string{"framing", "bufio"} {
		for _, size := range []int{256 << 10, 4 << 20} {
			b.Run(fmt.Sprintf("impl=%s/size=%d", impl, size), func(b *testing.B) {
				client, server := frTCPPair(b)
				done := make(chan struct{})
				go frDrain(server, done)
				payload := make([]byte, size)
				spec := frSpec
				spec.MaxFrameSize = 8 << 20
				b.SetBytes(int64(4 + size))
				b.ReportAllocs()
				var write func() error
				if impl == "framing" {
					w, err := framing.NewWriter(frPlainWriter{client}, spec)
					if err != nil {
						b.Fatal(err)
					}
					write = func() error { return w.WriteFrame(payload) }
				} else {
					bw := bufio.NewWriterSize(frPlainWriter{client}, 32<<10)
					var hdr [4]byte
					write = func() error {
						binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
						bw.Write(hdr[:])
						bw.Write(payload)
						return bw.Flush()
					}
				}
				b.ResetTimer()
				ct := cputime.Start(b)
				for range b.N {
					if err := write(); err != nil {
						b.Fatal(err)
					}
				}
				ct.Stop()
				b.StopTimer()
				client.Close()
				<-done
				server.Close()
			})
		}
	}
}
