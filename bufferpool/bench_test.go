package bufferpool_test

import (
	"runtime"
	"strconv"
	"testing"

	"github.com/readyconn/readyconn/bufferpool"
)

// benchSizes are the request sizes of the Get/Put benchmarks: a small
// message, gRPC's smallest tier, a page, the classic 32 KiB read buffer, a
// large frame and the largest default class.
var benchSizes = []int{64, 256, 4 << 10, 32 << 10, 256 << 10, 1 << 20}

// BenchmarkGetPut measures a warm Get followed by Put, from one goroutine
// (single) and from all Ps at once (parallel, the pattern of many
// connections each taking a buffer when bytes arrive). The comparison with
// gRPC's pools, with CPU time per operation, is in the benchmarks module
// (BenchmarkPoolGetPut).
func BenchmarkGetPut(b *testing.B) {
	for _, run := range []string{"single", "parallel"} {
		for _, n := range benchSizes {
			b.Run("run="+run+"/size="+strconv.Itoa(n), func(b *testing.B) {
				p := bufferpool.NewTiered()
				warm(p, n)
				b.ReportAllocs()
				b.ResetTimer()
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

// warm fills p with a few buffers for requests of n bytes, so that the
// benchmark measures the steady state rather than the first misses of each
// P.
func warm(p *bufferpool.Tiered, n int) {
	bufs := make([]*[]byte, 2*runtime.GOMAXPROCS(0))
	for i := range bufs {
		bufs[i] = p.Get(n)
	}
	for _, b := range bufs {
		p.Put(b)
	}
}
