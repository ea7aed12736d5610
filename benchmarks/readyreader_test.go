package benchmarks

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/readyreader"
)

// rrLoopback returns the accepted side of a TCP loopback connection and
// starts a goroutine that writes msgSize-byte messages to it until the
// returned stop function is called.
func rrLoopback(b *testing.B, msgSize int) (*net.TCPConn, func()) {
	b.Helper()
	w, r := testnet.TCPPair(b)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		msg := make([]byte, msgSize)
		for {
			if _, err := w.Write(msg); err != nil {
				return
			}
		}
	}()
	return r, func() {
		r.Close()
		w.Close()
		wg.Wait()
	}
}

// BenchmarkLoopbackRead reads a stream of size-byte messages over TCP
// loopback, one message per op, with plain conn.Read, a bufio.Reader, the
// readyreader Reader (non-pinning ReadOnReady) and a readyreader.Buffered.
func BenchmarkLoopbackRead(b *testing.B) {
	for _, impl := range []string{"read", "bufio", "readyreader", "buffered"} {
		for _, size := range []int{64, 4096, 65536} {
			b.Run("impl="+impl+"/size="+strconv.Itoa(size), func(b *testing.B) {
				conn, stop := rrLoopback(b, size)
				defer stop()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				switch impl {
				case "read":
					buf := make([]byte, size)
					b.ResetTimer()
					for range b.N {
						if _, err := io.ReadFull(conn, buf); err != nil {
							b.Fatal(err)
						}
					}
				case "bufio":
					br := bufio.NewReaderSize(conn, max(size, 4096))
					buf := make([]byte, size)
					b.ResetTimer()
					for range b.N {
						if _, err := io.ReadFull(br, buf); err != nil {
							b.Fatal(err)
						}
					}
				case "readyreader":
					pool := bufferpool.NewTiered()
					rd := readyreader.New(conn)
					b.ResetTimer()
					for range b.N {
						for got := 0; got < size; {
							buf, n, err := rd.ReadOnReady(size-got, pool)
							if err != nil {
								b.Fatal(err)
							}
							got += n
							pool.Put(buf)
						}
					}
				case "buffered":
					pool := bufferpool.NewTiered()
					br := readyreader.NewBuffered(readyreader.New(conn), max(size, 4096), pool)
					buf := make([]byte, size)
					b.ResetTimer()
					for range b.N {
						if _, err := io.ReadFull(br, buf); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

// BenchmarkWakeBytes sends one 100-byte message at a time and waits for the
// reader to take it, so every message is a separate wake-up of a reader that
// asks for 32 KiB. It reports the pool bytes taken per wake (grpc-go takes a
// fixed 32.5 KiB buffer).
func BenchmarkWakeBytes(b *testing.B) {
	w, r := testnet.TCPPair(b)
	pool := &rrCountingPool{Tiered: bufferpool.NewTiered()}
	rd := readyreader.New(r)
	msg := make([]byte, 100)
	b.ReportAllocs()
	b.ResetTimer()
	wakes := 0
	for range b.N {
		if _, err := w.Write(msg); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < len(msg); {
			buf, n, err := rd.ReadOnReady(32*1024, pool)
			if err != nil {
				b.Fatal(err)
			}
			got += n
			wakes++
			pool.Put(buf)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(pool.bytes)/float64(wakes), "poolB/wake")
}

type rrCountingPool struct {
	*bufferpool.Tiered
	bytes int64
}

func (p *rrCountingPool) Get(n int) *[]byte {
	buf := p.Tiered.Get(n)
	p.bytes += int64(cap(*buf))
	return buf
}
