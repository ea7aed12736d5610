package benchmarks

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/readyconn/readyconn/benchmarks/internal/cputime"
	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/readyreader"
)

// readImpls are the ways of reading a connection these benchmarks compare:
// plain conn.Read (io.ReadFull), a bufio.Reader, the readyreader Reader
// (ReadOnReady, bytes processed in place in the pool buffer, as its users
// do) and a readyreader.Buffered.
var readImpls = []string{"read", "bufio", "readyreader", "buffered"}

// msgReader reads messages of one size from a connection with one of
// readImpls. Each implementation with a buffer gets bufSize.
type msgReader struct {
	impl string
	conn net.Conn
	p    []byte // the message, for the implementations that copy it out

	br  *bufio.Reader
	bb  *readyreader.Buffered
	rd  readyreader.Reader
	cur chunk // readyreader: the pool buffer being consumed
}

// chunk is a buffer returned by ReadOnReady and how much of it is consumed.
type chunk struct {
	pool     bufferpool.Pool
	size     int
	buf      *[]byte
	off, end int
	rd       readyreader.Reader
}

func newMsgReader(impl string, conn net.Conn, msgSize, bufSize int, pool bufferpool.Pool) *msgReader {
	m := &msgReader{impl: impl, conn: conn, p: make([]byte, msgSize)}
	switch impl {
	case "bufio":
		m.br = bufio.NewReaderSize(conn, bufSize)
	case "buffered":
		m.bb = readyreader.NewBuffered(readyreader.New(conn), bufSize, pool)
	case "readyreader":
		m.rd = readyreader.New(conn)
		m.cur = chunk{pool: pool, size: bufSize, rd: m.rd}
	}
	return m
}

// next returns up to max unread bytes, reading a new buffer when the
// current one is used up. The bytes are valid until the next call.
func (c *chunk) next(max int) ([]byte, error) {
	if c.off == c.end {
		if c.buf != nil {
			c.pool.Put(c.buf)
			c.buf = nil
		}
		buf, n, err := c.rd.ReadOnReady(c.size, c.pool)
		if n == 0 {
			return nil, err
		}
		c.buf, c.off, c.end = buf, 0, n
	}
	k := min(max, c.end-c.off)
	b := (*c.buf)[c.off : c.off+k]
	c.off += k
	return b, nil
}

func (c *chunk) release() {
	if c.buf != nil {
		c.pool.Put(c.buf)
		c.buf = nil
	}
}

// read reads one message. Only the readyreader implementation leaves the
// bytes in its pool buffer; the others copy them into m.p.
func (m *msgReader) read() error {
	var err error
	switch m.impl {
	case "read":
		_, err = io.ReadFull(m.conn, m.p)
	case "bufio":
		_, err = io.ReadFull(m.br, m.p)
	case "buffered":
		_, err = io.ReadFull(m.bb, m.p)
	case "readyreader":
		for got := 0; got < len(m.p) && err == nil; {
			var b []byte
			b, err = m.cur.next(len(m.p) - got)
			got += len(b)
		}
	}
	return err
}

// echo reads one message and writes it back; readyreader writes straight
// from its pool buffer.
func (m *msgReader) echo() error {
	if m.impl != "readyreader" {
		if err := m.read(); err != nil {
			return err
		}
		_, err := m.conn.Write(m.p)
		return err
	}
	for got := 0; got < len(m.p); {
		b, err := m.cur.next(len(m.p) - got)
		if err != nil {
			return err
		}
		if _, err := m.conn.Write(b); err != nil {
			return err
		}
		got += len(b)
	}
	return nil
}

func (m *msgReader) close() {
	m.cur.release()
	if m.bb != nil {
		m.bb.Reset(nil)
	}
}

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
// loopback, one message per op, with each of readImpls (buffers of
// max(size, 4 KiB)). The writer never waits, so a reader that falls behind
// gets many messages per read: this measures bulk throughput, not the cost
// of a wake-up (see BenchmarkRequestResponse).
func BenchmarkLoopbackRead(b *testing.B) {
	for _, impl := range readImpls {
		for _, size := range []int{64, 4096, 65536} {
			b.Run("impl="+impl+"/size="+strconv.Itoa(size), func(b *testing.B) {
				conn, stop := rrLoopback(b, size)
				defer stop()
				m := newMsgReader(impl, conn, size, max(size, 4096), bufferpool.NewTiered())
				defer m.close()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				defer cputime.Start(b).Stop()
				for range b.N {
					if err := m.read(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRequestResponse sends one size-byte message over TCP loopback
// and waits for the peer to echo it, one round trip per op, so that every
// message is a separate wake-up of each reader: the shape of an RPC client
// and server in lock-step. Both ends read with the implementation under
// test (buffers of 32 KiB, as gRPC asks for); cpu-ns/op is the CPU time of
// both ends together.
func BenchmarkRequestResponse(b *testing.B) {
	for _, impl := range readImpls {
		for _, size := range []int{40, 64, 100, 1024, 4096} {
			b.Run("impl="+impl+"/size="+strconv.Itoa(size), func(b *testing.B) {
				c, s := testnet.TCPPair(b)
				const bufSize = 32 << 10
				pool := bufferpool.NewTiered()
				client := newMsgReader(impl, c, size, bufSize, pool)
				server := newMsgReader(impl, s, size, bufSize, pool)
				errc := make(chan error, 1)
				go func() {
					defer server.close()
					for {
						if err := server.echo(); err != nil {
							errc <- err
							return
						}
					}
				}()
				defer func() {
					c.Close()
					<-errc
					client.close()
				}()
				msg := make([]byte, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				defer cputime.Start(b).Stop()
				for range b.N {
					if _, err := c.Write(msg); err != nil {
						b.Fatal(err)
					}
					if err := client.read(); err != nil {
						b.Fatal(err)
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
	timer := cputime.Start(b)
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
	timer.Stop()
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
