package benchmarks

import (
	"math/bits"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/mem"

	"github.com/readyconn/readyconn/benchmarks/internal/cputime"
	"github.com/readyconn/readyconn/bufferpool"
)

// A readyconn pool can be handed to gRPC (experimental.WithBufferPool), and
// gRPC's pool can be used wherever readyconn takes a bufferpool.Pool.
var (
	_ mem.BufferPool  = (*bufferpool.Tiered)(nil)
	_ bufferpool.Pool = mem.DefaultBufferPool()
)

// bpSizes are the request sizes of BenchmarkPoolGetPut: a small message, the
// smallest gRPC tier, a page, the classic 32 KiB read buffer, a large frame
// and the largest class of both pools.
var bpSizes = []int{64, 256, 4 << 10, 32 << 10, 256 << 10, 1 << 20}

// bpGroups are the like-for-like pairs. grpc-go's mem.DefaultBufferPool()
// clears the whole capacity of every buffer on Get; readyconn's pool clears
// it on Put when built WithZeroing. Neither readyconn's default pool nor the
// pools grpc-go uses for its own read buffers (internal/mem's "dirty"
// pools, e.g. for ALTS records) clear; grpc-go does not export those, so
// grpcDirty below restates one.
var bpGroups = []struct {
	clear string
	impls []bpImpl
}{
	{"no", []bpImpl{
		{"readyconn", func() bufferpool.Pool { return bufferpool.NewTiered() }},
		{"grpc", func() bufferpool.Pool { return newGRPCDirty(8, 12, 14, 15, 20) }},
	}},
	{"yes", []bpImpl{
		{"readyconn", func() bufferpool.Pool { return bufferpool.NewTiered(bufferpool.WithZeroing()) }},
		{"grpc", func() bufferpool.Pool { return mem.DefaultBufferPool() }},
	}},
}

type bpImpl struct {
	name string
	pool func() bufferpool.Pool
}

// BenchmarkPoolGetPut compares a warm Get followed by Put of readyconn's
// Tiered pool with grpc-go's pools, with and without clearing, from one
// goroutine (run=single) and from GOMAXPROCS goroutines at once
// (run=parallel, every P busy: the contended case). Compare the cpu-ns/op
// column with benchstat -col /impl.
func BenchmarkPoolGetPut(b *testing.B) {
	for _, g := range bpGroups {
		for _, run := range []string{"single", "parallel"} {
			for _, n := range bpSizes {
				for _, impl := range g.impls {
					name := "clear=" + g.clear + "/run=" + run + "/size=" + strconv.Itoa(n) + "/impl=" + impl.name
					b.Run(name, func(b *testing.B) {
						p := impl.pool()
						bpWarm(p, n)
						b.ReportAllocs()
						b.ResetTimer()
						defer cputime.Start(b).Stop()
						if run == "single" {
							for range b.N {
								buf := p.Get(n)
								(*buf)[0] = 1
								p.Put(buf)
							}
							return
						}
						b.RunParallel(func(pb *testing.PB) {
							for pb.Next() {
								buf := p.Get(n)
								(*buf)[0] = 1
								p.Put(buf)
							}
						})
					})
				}
			}
		}
	}
}

// TestBpCapacityVsGRPC records what capacity each pool hands out for
// requests just past gRPC's tiers, the difference the class spacing makes.
func TestBpCapacityVsGRPC(t *testing.T) {
	ours := bufferpool.NewTiered()
	grpc := mem.DefaultBufferPool()
	for _, tc := range []struct{ n, ours, grpc int }{
		{257, 320, 4096},
		{4097, 5120, 16384},
		{16385, 20480, 32768},
		{32<<10 + 1, 40960, 1 << 20},
	} {
		g := grpc.Get(tc.n)
		assert.Equal(t, tc.grpc, cap(*g), "grpc Get(%d)", tc.n)
		grpc.Put(g)
		r := ours.Get(tc.n)
		assert.Equal(t, tc.ours, cap(*r), "readyconn Get(%d)", tc.n)
		assert.Equal(t, tc.ours, ours.ClassSize(tc.n))
		ours.Put(r)
		t.Logf("Get(%d): readyconn cap %d, grpc cap %d", tc.n, cap(*r), cap(*g))
	}
	assert.Zero(t, ours.Stats().InUseBytes)
}

// TestGRPCDirtyMatchesGRPC checks that the restated dirty pool hands out
// the same capacities as grpc-go's default pool and reuses buffers the same
// way, differing only in not clearing them.
func TestGRPCDirtyMatchesGRPC(t *testing.T) {
	dirty := newGRPCDirty(8, 12, 14, 15, 20)
	stock := mem.DefaultBufferPool()
	for _, n := range []int{0, 1, 255, 256, 257, 4095, 4096, 4097, 16384, 16385, 32768, 32769, 1 << 20, 1<<20 + 1, 3 << 20} {
		d, s := dirty.Get(n), stock.Get(n)
		require.Len(t, *d, n)
		assert.Equal(t, cap(*s), cap(*d), "Get(%d)", n)
		dirty.Put(d)
		stock.Put(s)
	}
	// Reuse without clearing: a buffer put back is handed out again with
	// its old contents (retry: sync.Pool may drop a Put under -race).
	for range 100 {
		b := dirty.Get(300)
		(*b)[0] = 0xa5
		first := &(*b)[0]
		dirty.Put(b)
		b = dirty.Get(300)
		again := &(*b)[0] == first
		if again {
			assert.Equal(t, byte(0xa5), (*b)[0], "the dirty pool must not clear")
		}
		dirty.Put(b)
		if again {
			return
		}
	}
	t.Fatal("a buffer put back was never handed out again")
}

// bpWarm fills p with a few buffers for requests of n bytes, so that the
// benchmark measures the steady state rather than the first misses of each
// P.
func bpWarm(p bufferpool.Pool, n int) {
	bufs := make([]*[]byte, 2*runtime.GOMAXPROCS(0))
	for i := range bufs {
		bufs[i] = p.Get(n)
	}
	for _, b := range bufs {
		p.Put(b)
	}
}

// grpcDirty restates the algorithm of grpc-go v1.85's
// internal/mem.NewDirtyBinaryTieredBufferPool, the pool grpc-go uses for
// its own ALTS read buffers: power-of-two tiers, each a sync.Pool behind the
// pool interface, found from the bit length of the size; a fallback
// sync.Pool above the largest tier. It is mem.DefaultBufferPool() without
// the clearing on Get, so that the two pools can be compared like for like.
type grpcDirty struct {
	next, prev []int // exponent -> tier index for Get (next larger) and Put (previous smaller)
	tiers      []bufferpool.Pool
	fallback   *grpcDirtySimple
	maxCap     int
}

func newGRPCDirty(exps ...uint8) *grpcDirty {
	maxExp := bits.UintSize - 2
	next := make([]int, maxExp+1)
	prev := make([]int, maxExp+1)
	for i := range next {
		next[i], prev[i] = -1, -1
	}
	p := &grpcDirty{fallback: &grpcDirtySimple{}}
	for i, e := range exps { // ascending, distinct
		p.tiers = append(p.tiers, &grpcDirtySized{size: 1 << e})
		p.maxCap = 1 << e
		next[e], prev[e] = i, i
	}
	for i := maxExp - 1; i >= 0; i-- {
		if next[i] == -1 {
			next[i] = next[i+1]
		}
	}
	for i := 1; i <= maxExp; i++ {
		if prev[i] == -1 {
			prev[i] = prev[i-1]
		}
	}
	p.next, p.prev = next, prev
	return p
}

func (p *grpcDirty) Get(size int) *[]byte {
	if size == 0 || size > p.maxCap {
		return p.fallback.Get(size)
	}
	return p.tiers[p.next[bits.Len(uint(size-1))]].Get(size)
}

func (p *grpcDirty) Put(buf *[]byte) {
	c := cap(*buf)
	switch {
	case c == 0:
	case c > p.maxCap:
		p.fallback.Put(buf)
	default:
		if i := p.prev[bits.Len(uint(c))-1]; i >= 0 {
			p.tiers[i].Put(buf)
		}
	}
}

type grpcDirtySized struct {
	pool sync.Pool
	size int
}

func (p *grpcDirtySized) Get(size int) *[]byte {
	buf, ok := p.pool.Get().(*[]byte)
	if !ok {
		b := make([]byte, size, p.size)
		return &b
	}
	*buf = (*buf)[:size]
	return buf
}

func (p *grpcDirtySized) Put(buf *[]byte) {
	if cap(*buf) < p.size {
		return
	}
	p.pool.Put(buf)
}

type grpcDirtySimple struct{ pool sync.Pool }

func (p *grpcDirtySimple) Get(size int) *[]byte {
	bs, ok := p.pool.Get().(*[]byte)
	if ok && cap(*bs) >= size {
		*bs = (*bs)[:size]
		return bs
	}
	if ok {
		p.pool.Put(bs)
	}
	const page = 4096
	b := make([]byte, size, (size+page-1)&^(page-1))
	return &b
}

func (p *grpcDirtySimple) Put(buf *[]byte) { p.pool.Put(buf) }
