package bufferpool

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBucket checks the quarter-octave bucket arithmetic against its
// definition: bucket b holds exactly (bucketUpper(b-1), bucketUpper(b)].
func TestBucket(t *testing.T) {
	for n := 0; n <= minBucketSize; n++ {
		require.Equal(t, 0, bucket(n), "n=%d", n)
	}
	prev := minBucketSize
	for b := 1; bucketUpper(b) <= maxClassSize; b++ {
		up := bucketUpper(b)
		require.Greater(t, up, prev, "bucket %d", b)
		for _, n := range []int{prev + 1, (prev + up) / 2, up} {
			require.Equal(t, b, bucket(n), "n=%d", n)
		}
		require.Equal(t, b+1, bucket(up+1), "n=%d", up+1)
		prev = up
	}
	// Exhaustively over the default range.
	b := 0
	for n := 1; n <= 1<<20; n++ {
		if n > bucketUpper(b) {
			b++
		}
		if bucket(n) != b {
			t.Fatalf("bucket(%d) = %d, want %d", n, bucket(n), b)
		}
	}
}

// TestPutIndex checks the class a returned capacity is routed to against a
// brute-force search, for odd size sets.
func TestPutIndex(t *testing.T) {
	for _, sizes := range [][]int{
		defaultSizeList,
		{100, 1000},
		{1030, 1100, 1200, 4096},
		{16, 17, 18, 19, 20, 21},
		{64, 4096, 16384, 32768, 1 << 20},
	} {
		p := NewTiered(WithSizes(sizes...))
		largest := sizes[len(sizes)-1]
		for c := 0; c <= largest+2; c++ {
			want := -1
			for i, s := range p.sizes {
				if s <= c && c <= largest {
					want = i
				}
			}
			if got := p.putIndex(c); got != want {
				t.Fatalf("sizes %v: putIndex(%d) = %d, want %d", sizes, c, got, want)
			}
		}
	}
}

// TestDebugSweep checks that a debug pool forgets returned buffers once the
// collector has freed them, so long test runs do not grow its records
// without bound.
func TestDebugSweep(t *testing.T) {
	p := NewTiered(WithDebug(), WithSizes(64))
	for i := range 20000 {
		p.Put(p.Get(100)) // oversized: dropped, so garbage after Put
		if i%1000 == 999 {
			runtime.GC()
		}
	}
	p.debug.mu.Lock()
	n := len(p.debug.returned)
	p.debug.mu.Unlock()
	require.Less(t, n, 5000, "records of freed buffers are not swept")
}
