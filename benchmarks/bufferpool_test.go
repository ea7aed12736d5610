package benchmarks

import (
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc/mem"

	"github.com/readyconn/readyconn/bufferpool"
)

// A readyconn pool can be handed to gRPC (experimental.WithBufferPool), and
// gRPC's pool can be used wherever readyconn takes a bufferpool.Pool.
var (
	_ mem.BufferPool  = (*bufferpool.Tiered)(nil)
	_ bufferpool.Pool = mem.DefaultBufferPool()
)

// bpSizes are the request sizes of BenchmarkPoolGetPut, the same as in
// bufferpool's own BenchmarkGetPut.
var bpSizes = []int{64, 4 << 10, 32 << 10, 256 << 10}

// bpImpls are the pools compared. grpc-go's default pool clears the whole
// capacity of every buffer on Get; readyconn-zeroing clears on Put, which is
// the comparable setting.
var bpImpls = []struct {
	name string
	pool func() bufferpool.Pool
}{
	{"readyconn", func() bufferpool.Pool { return bufferpool.NewTiered() }},
	{"readyconn-zeroing", func() bufferpool.Pool { return bufferpool.NewTiered(bufferpool.WithZeroing()) }},
	{"grpc", func() bufferpool.Pool { return mem.DefaultBufferPool() }},
}

// BenchmarkPoolGetPut compares a warm parallel Get/Put of readyconn's
// Tiered pool with grpc-go's default pool.
func BenchmarkPoolGetPut(b *testing.B) {
	for _, impl := range bpImpls {
		for _, n := range bpSizes {
			b.Run("impl="+impl.name+"/size="+strconv.Itoa(n), func(b *testing.B) {
				p := impl.pool()
				bpWarm(p, n)
				b.ReportAllocs()
				b.ResetTimer()
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
