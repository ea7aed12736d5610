package bufferpool

import (
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"
	"weak"

	"github.com/stretchr/testify/assert"
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

// TestPutIndex checks the class a returned capacity is routed to, and the
// class Get serves a request from, against a brute-force search, for odd
// size sets and for runs of quarter-octave bounds (which take the
// arithmetic path); for runs the table walk is checked too.
func TestPutIndex(t *testing.T) {
	for _, tc := range []struct {
		sizes []int
		run   bool
	}{
		{defaultSizeList, true},
		{[]int{100, 1000}, false},
		{[]int{1030, 1100, 1200, 4096}, false},
		{[]int{16, 17, 18, 19, 20, 21}, false},
		{[]int{64, 4096, 16384, 32768, 1 << 20}, false},
		{[]int{16, 20, 24, 28, 32, 40}, true},
		{[]int{1024, 1280, 1536, 1792, 2048, 2560}, true},
		{[]int{777}, false},
		{[]int{80}, true},
		{[]int{64, 96}, false}, // bounds, but not consecutive
	} {
		p := NewTiered(WithSizes(tc.sizes...))
		require.Equal(t, tc.run, p.run >= 0, "sizes %v: run detection", tc.sizes)
		largest := tc.sizes[len(tc.sizes)-1]
		for c := 0; c <= largest+2; c++ {
			put, get := -1, -1
			for i, s := range p.sizes {
				if s <= c && c <= largest {
					put = i
				}
				if s >= c && get < 0 {
					get = i
				}
			}
			if got := p.putIndex(c); got != put {
				t.Fatalf("sizes %v: putIndex(%d) = %d, want %d", tc.sizes, c, got, put)
			}
			if got := p.classIndex(c); got != get {
				t.Fatalf("sizes %v: classIndex(%d) = %d, want %d", tc.sizes, c, got, get)
			}
			if c <= largest {
				if got := p.tableIndex(c); got != get {
					t.Fatalf("sizes %v: tableIndex(%d) = %d, want %d", tc.sizes, c, got, get)
				}
			}
		}
		require.Equal(t, -1, p.classIndex(-1))
		require.Equal(t, -1, p.putIndex(-1))
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

// TestSpill checks that Ps beyond the ones a pool was made for (GOMAXPROCS
// raised above the CPU count later) are counted exactly, through the
// atomic spill counters, and use no cache.
func TestSpill(t *testing.T) {
	p := NewTiered()
	p.locals.ps = p.locals.ps[:0] // every P is now beyond the per-P state
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				n := []int{0, 64, 1000, 1<<20 + 1}[(g+i)%4]
				b := p.Get(n)
				p.Put(b)
			}
		}()
	}
	wg.Wait()
	st := p.Stats()
	assert.Equal(t, uint64(4000), st.Gets)
	assert.Equal(t, uint64(4000), st.Puts)
	assert.Equal(t, uint64(1000), st.Drops, "the oversized Puts")
	assert.GreaterOrEqual(t, st.Allocs, uint64(1000))
	assert.Zero(t, st.InUseBytes)
	assert.Zero(t, st.InUseBuffers)
	b := p.Get(64)
	assert.Equal(t, int64(64), p.Stats().InUseBytes)
	p.Put(b)
}

// TestMoreProcs raises GOMAXPROCS above the per-P state a pool was made
// with and checks that the counts stay exact.
func TestMoreProcs(t *testing.T) {
	p := NewTiered()
	prev := runtime.GOMAXPROCS(len(p.locals.ps) + 3)
	defer runtime.GOMAXPROCS(prev)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				b := p.Get(100 + i%5000)
				if i%7 == 0 {
					runtime.Gosched()
				}
				p.Put(b)
			}
		}()
	}
	wg.Wait()
	st := p.Stats()
	assert.Equal(t, uint64(16*2000), st.Gets)
	assert.Equal(t, uint64(16*2000), st.Puts)
	assert.Zero(t, st.InUseBytes)
}

// TestDrainRace runs Get and Put from many goroutines while the per-P caches
// are drained over and over, and checks that no buffer is ever handed to
// two owners at once (each owner writes its own mark over the whole buffer
// and checks it is intact before Put) and that the counts stay exact.
func TestDrainRace(t *testing.T) {
	p := NewTiered()
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-stop:
				return
			default:
				p.locals.drain()
				runtime.Gosched()
			}
		}
	}()
	const goroutines = 8
	rounds := 3000
	if raceEnabled {
		rounds = 500
	}
	var (
		mu     sync.Mutex
		owners = map[*byte]int{}
		wg     sync.WaitGroup
	)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mark := byte(g + 1)
			for i := range rounds {
				b := p.Get(64 << (i % 3)) // three classes
				k := unsafe.SliceData((*b)[:cap(*b)])
				mu.Lock()
				other, taken := owners[k]
				owners[k] = g
				mu.Unlock()
				if taken {
					t.Errorf("buffer handed to goroutine %d while goroutine %d owns it", g, other)
					return
				}
				full := (*b)[:cap(*b)]
				for j := range full {
					full[j] = mark
				}
				runtime.Gosched()
				for j := range full {
					if full[j] != mark {
						t.Errorf("goroutine %d: byte %d of its buffer changed to %d", g, j, full[j])
						return
					}
				}
				mu.Lock()
				delete(owners, k)
				mu.Unlock()
				p.Put(b)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-drained
	st := p.Stats()
	assert.Equal(t, st.Gets, st.Puts)
	assert.Equal(t, uint64(goroutines*rounds), st.Gets)
	assert.Zero(t, st.InUseBytes)
}

// cached reports whether b sits in one of p's per-P caches.
func cached(p *Tiered, b *[]byte) bool {
	for i := range p.locals.ps {
		for _, c := range p.locals.ps[i].cache {
			if c == b {
				return true
			}
		}
	}
	return false
}

// TestCacheReleasedAfterGC checks that a buffer left in a per-P cache does
// not outlive a few garbage collections, as one left in a sync.Pool does
// not: an idle program keeps no pooled memory.
func TestCacheReleasedAfterGC(t *testing.T) {
	p := NewTiered()
	var w weak.Pointer[byte]
	for range 100 { // under -race a quarter of Puts bypass the cache
		b := p.Get(4096)
		w = weak.Make(unsafe.SliceData(*b))
		p.Put(b)
		if cached(p, b) {
			break
		}
		w = weak.Pointer[byte]{}
	}
	require.NotNil(t, w.Value(), "no Put ever went to a per-P cache")
	for i := 0; w.Value() != nil; i++ {
		require.Less(t, i, 50, "a cached buffer survived 50 collections")
		runtime.GC()
		time.Sleep(time.Millisecond) // let the cleanup that drains run
	}
	runtime.KeepAlive(p)
}

// TestPoolCollected checks that the hook that drains a pool's caches after
// each collection does not keep the pool itself alive.
func TestPoolCollected(t *testing.T) {
	p := NewTiered()
	p.Put(p.Get(100))
	w := weak.Make(p)
	p = nil
	for i := 0; w.Value() != nil; i++ {
		require.Less(t, i, 50, "an unused pool survived 50 collections")
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}
