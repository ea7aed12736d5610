package alts

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/internal/stacktest"
	"github.com/readyconn/readyconn/internal/testnet"
)

const stackMsgLen = 10

// stackPair returns a pair over TCP made as kind says ("handshake": Client
// and Server, which run AES128GCMRekey; or NewConn with a protocol), with a
// few messages exchanged to warm up the pools and caches a long-lived
// process has warm.
//
// The client, which the tests read from, takes its buffers from a pool of
// its own that keeps what it is given back: a pool that has to allocate goes
// as deep as the runtime's allocator (sweeping included), which is not what
// this measures, and a long-lived connection's pool is warm.
func stackPair(t *testing.T, kind string) (client, server *Conn) {
	pool := &freeList{}
	if kind == "handshake" {
		a, _ := hsPKIs(t)
		cc, sc := testnet.TCPPair(t)
		ch := make(chan hsResult, 1)
		go func() {
			s, err := Server(sc, a.ServerConfig(false))
			ch <- hsResult{s, err}
		}()
		c, err := Client(cc, hsClientConfig(a, false), WithPool(pool))
		require.NoError(t, err)
		r := <-ch
		require.NoError(t, r.err)
		client, server = c, r.conn
	} else {
		a, b := testnet.TCPPair(t)
		var err error
		client, err = newConnUnguarded(a, ClientSide, kind, keyFor(kind), WithPool(pool))
		require.NoError(t, err)
		server, err = newConnUnguarded(b, ServerSide, kind, keyFor(kind))
		require.NoError(t, err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	for range 3 {
		_, err := server.Write(make([]byte, stackMsgLen))
		require.NoError(t, err)
		_, err = io.ReadFull(client, make([]byte, stackMsgLen))
		require.NoError(t, err)
	}
	return client, server
}

// grew runs read twice on a goroutine whose stack has burn bytes used
// (stacktest.Grew): the first read takes a message that is already on its
// way, the second parks until the server sends another once the reader is
// parked. That is what a reader does as its connection goes from busy to
// idle and back: wake, decrypt, deliver, park.
func grew(t *testing.T, kind string, burn int, read func(c *Conn)) bool {
	return grewIdle(t, kind, burn, read, nil)
}

// grewIdle is grew with idle, if not nil, called while the reader is parked
// before the second read.
func grewIdle(t *testing.T, kind string, burn int, read func(c *Conn), idle func(c, s *Conn)) bool {
	c, s := stackPair(t, kind)
	// Finish the garbage collector's sweeping now, and warm the pools up
	// again after it: an allocation right after a collection sweeps on
	// the allocating goroutine's stack, which would make the result depend
	// on when the last collection ran. (A long-lived connection's pools are
	// warm.)
	runtime.GC()
	for range 2 {
		_, err := s.Write(make([]byte, stackMsgLen))
		require.NoError(t, err)
		_, err = io.ReadFull(c, make([]byte, stackMsgLen))
		require.NoError(t, err)
	}
	send := func() error {
		_, err := s.Write(make([]byte, stackMsgLen))
		return err
	}
	var parkedIdle func()
	if idle != nil {
		parkedIdle = func() { idle(c, s) }
	}
	return stacktest.GrewAcrossIdle(t, burn, "alts.(*Conn).Read", send, parkedIdle, func() { read(c) })
}

// TestParkedStack proves that a reader's stack stays at 2 KiB through
// waking, decrypting, delivering and parking again, with at least
// parkHeadroom (150 B where AES-GCM has assembly) of headroom: a goroutine
// that grew past 2 KiB keeps 4 KiB while parked. Set STACK_CALIBRATE=1 to
// log the headroom found.
func TestParkedStack(t *testing.T) {
	if !stacktest.InChild(t) {
		return
	}
	const headroom = parkHeadroom
	for _, r := range stackReads() {
		for _, kind := range []string{"handshake", AES128GCM} {
			t.Run(r.name+"/"+kind, func(t *testing.T) {
				// The check can fail: far more than 2 KiB of burn grows.
				require.True(t, grew(t, kind, 2048, r.read))
				assert.False(t, grew(t, kind, headroom, r.read),
					"an alts reader grows its stack past 2 KiB with %d B used before it", headroom)
				if os.Getenv("STACK_CALIBRATE") != "" {
					t.Logf("%s %s: %d B of headroom", r.name, kind,
						stacktest.Headroom(func(burn int) bool { return grew(t, kind, burn, r.read) }))
				}
			})
		}
	}
}

// stackRead is a read of the parked-stack tests: it expects one message of
// stackMsgLen bytes.
type stackRead struct {
	name string
	read func(c *Conn)
}

// stackReads returns a Read and a ReadOnReady for the parked-stack tests.
func stackReads() []stackRead {
	// The caller's pool: one that hands out a buffer it already has. (A
	// pool that has to allocate goes as deep as the runtime's allocator,
	// sweeping included, whoever calls it.)
	pool := &onePool{buf: make([]byte, 32<<10)}
	var p [64]byte
	return []stackRead{
		{"Read", func(c *Conn) {
			if n, err := c.Read(p[:]); n != stackMsgLen || err != nil {
				panic(fmt.Sprint(n, err))
			}
		}},
		{"ReadOnReady", func(c *Conn) {
			buf, n, err := c.ReadOnReady(32<<10, pool)
			if n != stackMsgLen || err != nil {
				panic(fmt.Sprint(n, err))
			}
			pool.Put(buf)
		}},
	}
}

// freeList is a pool that keeps every buffer given back and hands it out
// again: after warming up it never allocates.
type freeList struct {
	mu   sync.Mutex
	free []*[]byte
}

func (p *freeList) Get(n int) *[]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.free) - 1; i >= 0; i-- {
		if b := p.free[i]; cap(*b) >= n {
			p.free = append(p.free[:i], p.free[i+1:]...)
			*b = (*b)[:n]
			return b
		}
	}
	b := make([]byte, n, max(n, 64<<10))
	return &b
}

func (p *freeList) Put(b *[]byte) {
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
}

// onePool hands out the one buffer it has (its first n bytes), and takes
// it back.
type onePool struct {
	buf []byte
	out bool
}

func (p *onePool) Get(n int) *[]byte {
	if p.out || n > len(p.buf) {
		panic("onePool: Get while the buffer is out, or too large")
	}
	p.out = true
	b := p.buf[:n]
	return &b
}

func (p *onePool) Put(*[]byte) { p.out = false }

// TestParkedStackRekey is TestParkedStack across a key epoch change: the
// frame that starts a new epoch makes the reader derive a key (HMAC,
// AES key schedule), which runs on a goroutine of its own, so the reader's
// stack does not grow.
func TestParkedStackRekey(t *testing.T) {
	if !stacktest.InChild(t) {
		return
	}
	c, s := stackPair(t, AES128GCMRekey)
	// The next frame from s is the first of epoch 1.
	s.setCounters(refCounter(ServerSide, 1<<16), refCounter(ClientSide, 3))
	c.setCounters(refCounter(ClientSide, 3), refCounter(ServerSide, 1<<16))
	msg := bytes.Repeat([]byte{7}, stackMsgLen)
	send := func() error {
		_, err := s.Write(msg)
		return err
	}
	var p [64]byte
	g := stacktest.GrewAcrossIdle(t, parkHeadroom, "alts.(*Conn).Read", send, nil, func() {
		if n, err := c.Read(p[:]); n != stackMsgLen || err != nil {
			panic(fmt.Sprint(n, err))
		}
	})
	require.Equal(t, uint64(1), c.in.epoch, "the reader did not change epochs")
	assert.False(t, g, "a key epoch change grew the reader's stack")
}

// TestParkedStackAfterCollection is TestParkedStack with two garbage
// collections while the reader is parked: they free the idle read AEAD, so
// the reader wakes to rebuild it from the key (AES key schedule; for
// AES128GCMRekey an HMAC too), which runs on a goroutine of its own and
// allocates nothing on the reader's stack (right after a collection an
// allocation refills the allocator's caches, deep enough to grow the
// stack), so the reader keeps the same headroom. Set STACK_CALIBRATE=1 to
// log the headroom found.
func TestParkedStackAfterCollection(t *testing.T) {
	if !stacktest.InChild(t) {
		return
	}
	for _, r := range stackReads() {
		for _, kind := range []string{"handshake", AES128GCM, AES128GCMRekey} {
			t.Run(r.name+"/"+kind, func(t *testing.T) {
				var freed atomic.Int32
				idle := func(c, _ *Conn) {
					runtime.GC()
					runtime.GC()
					// A strong reference (c.in.box) would keep it.
					if c.in.weak.Value() == nil {
						freed.Add(1)
					}
				}
				// The check can fail: far more than 2 KiB of burn grows.
				require.True(t, grewIdle(t, kind, 2048, r.read, idle))
				assert.False(t, grewIdle(t, kind, parkHeadroom, r.read, idle),
					"rebuilding the read AEAD after a collection grew the reader's stack with %d B used before it", parkHeadroom)
				require.Equal(t, int32(2), freed.Load(), "the collections did not free the idle read AEAD")
				if os.Getenv("STACK_CALIBRATE") != "" {
					t.Logf("%s %s: %d B of headroom", r.name, kind,
						stacktest.Headroom(func(burn int) bool { return grewIdle(t, kind, burn, r.read, idle) }))
				}
			})
		}
	}
}
