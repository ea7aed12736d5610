package bufferpool_test

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/readyconn/readyconn/bufferpool"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Both sides must keep the method set of google.golang.org/grpc/mem.BufferPool
// (checked against gRPC itself in benchmarks/bufferpool_test.go).
var _ bufferpool.Pool = (*bufferpool.Tiered)(nil)

// lastGetBytes is what the last Get in reuses added to InUseBytes.
var lastGetBytes int64

// base is the address of a buffer's backing array.
func base(b *[]byte) *byte { return unsafe.SliceData((*b)[:cap(*b)]) }

// refClass is the brute-force reference for ClassSize: the smallest class
// that holds n, or n itself above the largest class.
func refClass(sizes []int, n int) int {
	best := -1
	for _, s := range sizes {
		if s >= n && (best < 0 || s < best) {
			best = s
		}
	}
	if best < 0 {
		return n
	}
	return best
}

// reuses puts buffers made by mk and reports whether a following Get(n)
// hands the same backing array back, calling check on it when it does.
// lastGetBytes is set to the InUseBytes the Get added.
// sync.Pool gives no guarantee (the race detector drops a quarter of Puts on
// purpose, and a GC may empty the pool), so it tries a bounded number of
// times.
func reuses(p *bufferpool.Tiered, mk func() *[]byte, n int, check func(*[]byte)) bool {
	for range 100 {
		b := mk()
		want := base(b)
		p.Put(b)
		before := p.Stats().InUseBytes
		g := p.Get(n)
		lastGetBytes = p.Stats().InUseBytes - before
		same := base(g) == want
		if same && check != nil {
			check(g)
		}
		p.Put(g)
		if same {
			return true
		}
	}
	return false
}

func TestDefaultSizes(t *testing.T) {
	s := bufferpool.DefaultSizes()
	require.Len(t, s, 57)
	assert.Equal(t, 64, s[0])
	assert.Equal(t, 1<<20, s[len(s)-1])
	assert.True(t, slices.IsSorted(s))
	assert.Equal(t, s, bufferpool.Default().Sizes())
	assert.Equal(t, s, bufferpool.NewTiered().Sizes())
	// Four classes per power of two: 2^k + j·2^(k-2), j = 1..4.
	for i := 1; i < len(s); i++ {
		k := i - 1
		pow := 64 << (k / 4)
		assert.Equal(t, pow+(k%4+1)*pow/4, s[i], "class %d", i)
	}
	// DefaultSizes returns a copy: changing it changes no pool, and a later
	// NewTiered still works (it used to panic).
	s[3] = 7
	assert.Equal(t, 112, bufferpool.DefaultSizes()[3])
	assert.NotPanics(t, func() { bufferpool.NewTiered() })
	assert.Equal(t, 112, bufferpool.NewTiered().Sizes()[3])
	// Sizes returns a copy.
	p := bufferpool.NewTiered()
	p.Sizes()[0] = 1
	assert.Equal(t, 64, p.Sizes()[0])
}

// TestTierBoundaries asks for n = class-1, class and class+1 around every
// default class, plus 0, 1 and sizes above the largest class, and checks
// length, capacity and InUseBytes of what Get returns.
func TestTierBoundaries(t *testing.T) {
	sizes := bufferpool.DefaultSizes()
	largest := sizes[len(sizes)-1]
	type tc struct{ n, wantCap int }
	cases := []tc{{0, 64}, {1, 64}, {largest + 1, largest + 1}, {3 << 20, 3 << 20}}
	for i, s := range sizes {
		next := largest + 1 // above the largest: exact
		if i+1 < len(sizes) {
			next = sizes[i+1]
		}
		cases = append(cases, tc{s - 1, s}, tc{s, s}, tc{s + 1, next})
	}
	p := bufferpool.NewTiered()
	for _, c := range cases {
		require.Equal(t, c.wantCap, p.ClassSize(c.n), "ClassSize(%d)", c.n)
		b := p.Get(c.n)
		require.Len(t, *b, c.n, "Get(%d)", c.n)
		require.Equal(t, c.wantCap, cap(*b), "cap of Get(%d)", c.n)
		require.Equal(t, int64(c.wantCap), p.Stats().InUseBytes, "InUseBytes after Get(%d)", c.n)
		require.Equal(t, int64(1), p.Stats().InUseBuffers)
		p.Put(b)
		require.Zero(t, p.Stats().InUseBytes)
		require.Zero(t, p.Stats().InUseBuffers)
	}
	st := p.Stats()
	assert.Equal(t, uint64(len(cases)), st.Gets)
	assert.Equal(t, uint64(len(cases)), st.Puts)
}

// TestClassSizeExhaustive compares ClassSize with the brute-force reference
// for every n up to just past the largest default class.
func TestClassSizeExhaustive(t *testing.T) {
	p := bufferpool.NewTiered()
	sizes := bufferpool.DefaultSizes()
	i := 0
	for n := 0; n <= 1<<20+2; n++ {
		for i < len(sizes) && sizes[i] < n {
			i++
		}
		want := n
		if i < len(sizes) {
			want = sizes[i]
		}
		if got := p.ClassSize(n); got != want {
			t.Fatalf("ClassSize(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestWithSizes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
		want  []int // sorted, deduplicated
	}{
		{"odd", []int{100, 1000}, []int{100, 1000}},
		{"unsorted-duplicates", []int{4096, 64, 1000, 64, 512, 4096}, []int{64, 512, 1000, 4096}},
		{"three-in-one-quarter-octave", []int{1030, 1100, 1200, 8000}, []int{1030, 1100, 1200, 8000}},
		{"all-tiny", []int{21, 16, 17, 18, 19, 20}, []int{16, 17, 18, 19, 20, 21}},
		{"single", []int{777}, []int{777}},
		{"grpc-tiers", []int{1 << 20, 256, 4096, 16384, 32768}, []int{256, 4096, 16384, 32768, 1 << 20}},
		{"powers-of-two", []int{1 << 16, 1 << 6, 1 << 10, 1 << 7, 1 << 20}, []int{64, 128, 1024, 1 << 16, 1 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := bufferpool.NewTiered(bufferpool.WithSizes(tc.sizes...))
			require.Equal(t, tc.want, p.Sizes())
			largest := tc.want[len(tc.want)-1]
			for n := 0; n <= largest+2; n++ {
				if got, want := p.ClassSize(n), refClass(tc.want, n); got != want {
					t.Fatalf("ClassSize(%d) = %d, want %d", n, got, want)
				}
			}
			// Spot-check that Get agrees with ClassSize.
			for _, n := range []int{0, 1, tc.want[0], tc.want[0] + 1, largest - 1, largest, largest + 1} {
				b := p.Get(max(n, 0))
				require.Equal(t, p.ClassSize(n), cap(*b), "cap of Get(%d)", n)
				p.Put(b)
			}
			require.Zero(t, p.Stats().InUseBytes)
		})
	}
}

func TestWithSizesInvalid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
		msg   string
	}{
		{"none", nil, "at least one size"},
		{"zero", []int{0, 64}, "outside"},
		{"negative", []int{-64}, "outside"},
		{"below-16", []int{15, 64}, "outside"},
		{"above-1GiB", []int{64, 1<<30 + 1}, "outside"},
		{"too-many", func() []int {
			var s []int
			for i := range 256 {
				s = append(s, 64+i)
			}
			return s
		}(), "at most 255"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				require.NotNil(t, r, "NewTiered(WithSizes(%v)) did not panic", tc.sizes)
				require.Contains(t, fmt.Sprint(r), tc.msg)
			}()
			bufferpool.NewTiered(bufferpool.WithSizes(tc.sizes...))
		})
	}
	// The bounds themselves are accepted.
	p := bufferpool.NewTiered(bufferpool.WithSizes(16, 1<<30))
	assert.Equal(t, []int{16, 1 << 30}, p.Sizes())
	assert.Equal(t, 1<<30, p.ClassSize(17))
}

func TestGetNegativePanics(t *testing.T) {
	p := bufferpool.NewTiered()
	assert.PanicsWithValue(t, "bufferpool: Get with negative length", func() { p.Get(-1) })
	assert.Zero(t, p.Stats().Gets)
}

func TestPutNil(t *testing.T) {
	for _, p := range []*bufferpool.Tiered{bufferpool.NewTiered(), bufferpool.NewTiered(bufferpool.WithDebug())} {
		p.Put(nil)
		assert.Equal(t, bufferpool.Stats{}, p.Stats())
	}
}

// TestPutRoutesByCap checks that Put looks at cap, never len.
func TestPutRoutesByCap(t *testing.T) {
	t.Run("resliced-shorter", func(t *testing.T) {
		p := bufferpool.NewTiered()
		mk := func() *[]byte {
			b := p.Get(1000) // class 1024
			*b = (*b)[:10]
			return b
		}
		ok := reuses(p, mk, 1024, func(g *[]byte) {
			assert.Len(t, *g, 1024)
			assert.Equal(t, 1024, cap(*g))
		})
		require.True(t, ok, "a resliced 1024-byte buffer was never handed out again for Get(1024)")
		// Had it been routed by len, the 64-byte class would now hand out
		// 1024-byte buffers.
		p.Put(mk())
		for range 10 {
			b := p.Get(10)
			require.Equal(t, 64, cap(*b))
			defer p.Put(b)
		}
	})
	t.Run("cap-between-classes", func(t *testing.T) {
		p := bufferpool.NewTiered()
		// cap 100 lies between the classes 96 and 112: it serves class 96.
		mk := func() *[]byte { b := make([]byte, 3, 100); return &b }
		ok := reuses(p, mk, 90, func(g *[]byte) {
			assert.Len(t, *g, 90)
			assert.Equal(t, 100, cap(*g))
			assert.Equal(t, int64(100), lastGetBytes, "InUseBytes counts the real capacity handed out")
		})
		require.True(t, ok, "a cap-100 buffer was never handed out for Get(90)")
		// It must not serve a request above 96 (class 112), where it would
		// also fit but is not looked for, nor sit in class 112.
		p.Put(mk())
		b := p.Get(97)
		assert.Equal(t, 112, cap(*b))
		p.Put(b)
	})
}

func TestPutBelowSmallestDropped(t *testing.T) {
	p := bufferpool.NewTiered()
	for _, c := range []int{0, 1, 63} {
		b := make([]byte, c)
		p.Put(&b)
	}
	st := p.Stats()
	assert.Equal(t, uint64(3), st.Puts)
	assert.Equal(t, uint64(3), st.Drops)
	assert.Equal(t, int64(-64), st.InUseBytes, "foreign Puts skew InUseBytes by their capacity")
	// A dropped cap-63 buffer never serves Get(1).
	small := make([]byte, 63)
	p.Put(&small)
	for range 10 {
		b := p.Get(1)
		require.Equal(t, 64, cap(*b))
		defer p.Put(b)
	}
}

func TestOversized(t *testing.T) {
	p := bufferpool.NewTiered()
	const n = 1<<20 + 1
	for i := range 3 {
		b := p.Get(n)
		require.Len(t, *b, n)
		require.Equal(t, n, cap(*b), "oversized Get allocates exactly")
		st := p.Stats()
		require.Equal(t, uint64(i+1), st.Allocs, "oversized buffers are never reused")
		require.Equal(t, int64(n), st.InUseBytes)
		p.Put(b)
		st = p.Stats()
		require.Equal(t, uint64(i+1), st.Drops)
		require.Zero(t, st.InUseBytes)
		require.Zero(t, st.InUseBuffers)
	}
	// A buffer above the largest class is not kept for the largest class.
	big := make([]byte, 2<<20)
	p.Put(&big)
	b := p.Get(1 << 20)
	assert.Equal(t, 1<<20, cap(*b))
	p.Put(b)
}

func TestZeroing(t *testing.T) {
	fill := func(b *[]byte) {
		full := (*b)[:cap(*b)]
		for i := range full {
			full[i] = 0xa5
		}
	}
	allZero := func(b []byte) bool { return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) }

	t.Run("reused-buffer-is-zero", func(t *testing.T) {
		p := bufferpool.NewTiered(bufferpool.WithZeroing())
		mk := func() *[]byte { b := p.Get(100); fill(b); *b = (*b)[:3]; return b }
		require.True(t, reuses(p, mk, 100, func(g *[]byte) {
			assert.True(t, allZero((*g)[:cap(*g)]), "reused buffer not cleared: % x", (*g)[:8])
		}))
	})
	t.Run("control-without-zeroing", func(t *testing.T) {
		// Without the option the same sequence sees the old bytes, which
		// shows the check above can fail.
		p := bufferpool.NewTiered()
		mk := func() *[]byte { b := p.Get(100); fill(b); return b }
		require.True(t, reuses(p, mk, 100, func(g *[]byte) {
			assert.Equal(t, byte(0xa5), (*g)[:cap(*g)][cap(*g)-1])
		}))
	})
	t.Run("dropped-buffers-are-cleared", func(t *testing.T) {
		p := bufferpool.NewTiered(bufferpool.WithZeroing())
		for _, n := range []int{1<<20 + 1, 10} {
			var b *[]byte
			if n == 10 {
				s := make([]byte, n) // below the smallest class
				b = &s
			} else {
				b = p.Get(n)
			}
			fill(b)
			alias := (*b)[:cap(*b)]
			p.Put(b)
			assert.True(t, allZero(alias), "n=%d", n)
		}
	})
	t.Run("fresh-buffers-are-zero", func(t *testing.T) {
		p := bufferpool.NewTiered(bufferpool.WithZeroing())
		b := p.Get(4096)
		assert.True(t, allZero((*b)[:cap(*b)]))
		p.Put(b)
	})
}

func TestDebug(t *testing.T) {
	poisoned := func(b []byte) bool {
		want := bytes.Repeat([]byte(bufferpool.Poison), len(b)/4+1)[:len(b)]
		return bytes.Equal(b, want)
	}

	t.Run("double-put", func(t *testing.T) {
		p := bufferpool.NewTiered(bufferpool.WithDebug())
		b := p.Get(100)
		p.Put(b)
		assert.PanicsWithValue(t,
			"bufferpool: double Put of a buffer (cap 112) that was already returned to this pool",
			func() { p.Put(b) })
		st := p.Stats()
		assert.Equal(t, uint64(1), st.Puts, "a refused Put changes no counter")
		assert.Zero(t, st.InUseBytes)
	})
	t.Run("double-put-oversized", func(t *testing.T) {
		p := bufferpool.NewTiered(bufferpool.WithDebug())
		b := p.Get(2 << 20)
		p.Put(b)
		assert.PanicsWithValue(t,
			"bufferpool: double Put of a buffer (cap 2097152) that was already returned to this pool",
			func() { p.Put(b) })
	})
	t.Run("put-get-put-is-fine", func(t *testing.T) {
		p := bufferpool.NewTiered(bufferpool.WithDebug())
		for range 100 {
			p.Put(p.Get(64))
		}
		assert.Zero(t, p.Stats().InUseBuffers)
	})
	t.Run("foreign-put", func(t *testing.T) {
		p := bufferpool.NewTiered(bufferpool.WithDebug())
		other := bufferpool.NewTiered(bufferpool.WithDebug())
		mine := make([]byte, 64)
		fromOther := other.Get(64)
		empty := []byte{}
		for _, tc := range []struct {
			b   *[]byte
			msg string
		}{
			{&mine, "bufferpool: Put of a buffer (cap 64) that this pool did not hand out"},
			{fromOther, "bufferpool: Put of a buffer (cap 64) that this pool did not hand out"},
			{&empty, "bufferpool: Put of a zero-capacity buffer that this pool did not hand out"},
		} {
			assert.PanicsWithValue(t, tc.msg, func() { p.Put(tc.b) })
		}
		assert.Equal(t, bufferpool.Stats{}, p.Stats())
		other.Put(fromOther)
	})
	t.Run("changed-cap", func(t *testing.T) {
		p := bufferpool.NewTiered(bufferpool.WithDebug())
		b := p.Get(100)
		*b = (*b)[:10:50]
		assert.PanicsWithValue(t,
			"bufferpool: Put of a buffer with cap 50 that was handed out with cap 112",
			func() { p.Put(b) })
	})
	t.Run("poison-through-alias", func(t *testing.T) {
		p := bufferpool.NewTiered(bufferpool.WithDebug())
		for _, n := range []int{1, 64, 100, 4096, 1<<20 + 3} {
			b := p.Get(n)
			copy(*b, "payload that must not survive")
			alias := (*b)[:cap(*b)]
			p.Put(b)
			assert.True(t, poisoned(alias), "n=%d: % x", n, alias[:min(8, len(alias))])
		}
	})
	t.Run("poison-control", func(t *testing.T) {
		// A pool without WithDebug leaves the bytes alone, so the check
		// above can fail.
		p := bufferpool.NewTiered()
		b := p.Get(64)
		copy(*b, "payload")
		alias := *b
		p.Put(b)
		assert.False(t, poisoned(alias))
	})
	t.Run("with-zeroing", func(t *testing.T) {
		p := bufferpool.NewTiered(bufferpool.WithDebug(), bufferpool.WithZeroing())
		mk := func() *[]byte {
			b := p.Get(200)
			copy(*b, "secret")
			return b
		}
		var alias []byte
		mk2 := func() *[]byte {
			b := mk()
			alias = (*b)[:cap(*b)]
			return b
		}
		require.True(t, reuses(p, mk2, 200, func(g *[]byte) {
			full := (*g)[:cap(*g)]
			assert.Equal(t, make([]byte, len(full)), full, "Get must clear a poisoned buffer under WithZeroing")
		}))
		// The last alias was Put again by reuses: poisoned, not zero.
		assert.True(t, poisoned(alias))
	})
	t.Run("outstanding", func(t *testing.T) {
		p := bufferpool.NewTiered(bufferpool.WithDebug())
		assert.Empty(t, p.Outstanding())
		a, b, c := p.Get(10), p.Get(5000), p.Get(3<<20)
		p.Put(b)
		out := p.Outstanding()
		require.Len(t, out, 2)
		caps := []int{out[0].Cap, out[1].Cap}
		slices.Sort(caps)
		assert.Equal(t, []int{64, 3 << 20}, caps)
		for _, o := range out {
			assert.Contains(t, o.Stack, "bufferpool_test.TestDebug", "stack should name the caller of Get")
			assert.Contains(t, o.Stack, "bufferpool_test.go:")
			assert.NotContains(t, o.Stack, "bufferpool.(*Tiered).Get", "stack should start at the caller")
		}
		p.Put(a)
		p.Put(c)
		assert.Empty(t, p.Outstanding())
		assert.Nil(t, bufferpool.NewTiered().Outstanding(), "only debug pools track buffers")
	})
	t.Run("many-buffers", func(t *testing.T) {
		// Enough Put/Get traffic to make the debug bookkeeping sweep its
		// records of freed buffers; checks stay exact throughout.
		p := bufferpool.NewTiered(bufferpool.WithDebug(), bufferpool.WithSizes(64))
		for i := range 3000 {
			b := p.Get(100) // oversized: a new buffer every time
			p.Put(b)
			if i%1000 == 0 {
				assert.Panics(t, func() { p.Put(b) })
			}
		}
		assert.Empty(t, p.Outstanding())
		assert.Zero(t, p.Stats().InUseBytes)
	})
}

// TestStatsConcurrent runs many goroutines doing Get/Put in mixed sizes and
// checks that the counters come out exact, including InUseBytes while every
// goroutine is parked holding buffers. Run it with -race.
func TestStatsConcurrent(t *testing.T) {
	for _, debug := range []bool{false, true} {
		t.Run(fmt.Sprintf("debug=%v", debug), func(t *testing.T) {
			var opts []bufferpool.Option
			if debug {
				opts = append(opts, bufferpool.WithDebug())
			}
			p := bufferpool.NewTiered(opts...)
			const goroutines = 8
			rounds := 2000
			if debug || raceEnabled {
				rounds = 300
			}
			sizes := []int{0, 1, 64, 65, 1000, 4096, 32<<10 + 1, 1 << 20, 1<<20 + 1}
			var (
				wg      sync.WaitGroup
				parked  sync.WaitGroup
				release = make(chan struct{})
				held    = make([]int64, goroutines)
				drops   = make([]uint64, goroutines)
			)
			parked.Add(goroutines)
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var hold []*[]byte
					for r := range rounds {
						n := sizes[(g+r)%len(sizes)]
						b := p.Get(n)
						(*b) = (*b)[:n/2]
						if n > 1<<20 {
							drops[g]++
						}
						if r%3 == 0 {
							hold = append(hold, b)
						} else {
							p.Put(b)
						}
						if len(hold) > 4 {
							p.Put(hold[0])
							hold = hold[1:]
						}
					}
					for _, b := range hold {
						held[g] += int64(cap(*b))
					}
					parked.Done()
					<-release
					for _, b := range hold {
						p.Put(b)
					}
				}()
			}
			parked.Wait()
			st := p.Stats()
			var wantHeld int64
			for _, h := range held {
				wantHeld += h
			}
			assert.Equal(t, wantHeld, st.InUseBytes, "InUseBytes while goroutines hold buffers")
			assert.Equal(t, int64(goroutines*4), st.InUseBuffers)
			close(release)
			wg.Wait()

			st = p.Stats()
			total := uint64(goroutines * rounds)
			var wantDrops uint64
			for _, d := range drops {
				wantDrops += d
			}
			assert.Equal(t, total, st.Gets)
			assert.Equal(t, total, st.Puts)
			assert.Zero(t, st.InUseBuffers)
			assert.Zero(t, st.InUseBytes)
			assert.Equal(t, wantDrops, st.Drops)
			assert.GreaterOrEqual(t, st.Allocs, wantDrops, "every oversized Get allocates")
			assert.Less(t, st.Allocs, total, "warm Gets must hit the pool")
			if debug {
				assert.Empty(t, p.Outstanding())
			}
		})
	}
}

// TestAllocsWarm checks that a warm Get/Put pair allocates nothing for each
// benchmark size, with and without zeroing.
func TestAllocsWarm(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop Puts at random, so warm Gets may allocate")
	}
	for _, zero := range []bool{false, true} {
		var opts []bufferpool.Option
		if zero {
			opts = append(opts, bufferpool.WithZeroing())
		}
		p := bufferpool.NewTiered(opts...)
		for _, n := range benchSizes {
			p.Put(p.Get(n))
			allocs := testing.AllocsPerRun(200, func() {
				b := p.Get(n)
				(*b)[0] = 1
				p.Put(b)
			})
			assert.Zero(t, allocs, "zeroing=%v size=%d", zero, n)
		}
	}
	// Control: an oversized Get always allocates, so the measurement works.
	p := bufferpool.NewTiered()
	assert.Equal(t, 2.0, testing.AllocsPerRun(10, func() { p.Put(p.Get(2 << 20)) }))
}

// averageWaste computes exactly, over every integer request size n in
// [lo, hi] weighted 1/n (log-uniform), the mean of (ClassSize(n)-n)/ClassSize(n).
func averageWaste(p *bufferpool.Tiered, lo, hi int) float64 {
	var num, den float64
	for n := lo; n <= hi; n++ {
		w := 1 / float64(n)
		c := float64(p.ClassSize(n))
		num += w * (c - float64(n)) / c
		den += w
	}
	return num / den
}

func TestAverageWaste(t *testing.T) {
	w := averageWaste(bufferpool.Default(), 64, 1<<20)
	t.Logf("default classes: average waste %.2f%% for log-uniform requests in [64 B, 1 MiB]", 100*w)
	if w > 0.15 {
		t.Fatalf("average waste %.2f%% > 15%%", 100*w)
	}
	// The package doc states the figure; keep it honest.
	assert.InDelta(t, 0.084, w, 0.0005)
}

// TestPowerOfTwoWaste runs the same computation on other class sets as a
// check of the method: for power-of-two classes theory gives
// 1 - 1/(2 ln 2) ≈ 27.9%.
func TestPowerOfTwoWaste(t *testing.T) {
	var pow2 []int
	for s := 64; s <= 1<<20; s <<= 1 {
		pow2 = append(pow2, s)
	}
	w := averageWaste(bufferpool.NewTiered(bufferpool.WithSizes(pow2...)), 64, 1<<20)
	t.Logf("power-of-two classes: average waste %.2f%%", 100*w)
	assert.InDelta(t, 1-1/(2*math.Ln2), w, 0.005)

	// gRPC's default tiers (256 B, 4 KiB, 16 KiB, 32 KiB, 1 MiB).
	g := averageWaste(bufferpool.NewTiered(bufferpool.WithSizes(256, 4096, 16384, 32768, 1<<20)), 64, 1<<20)
	t.Logf("grpc-go default tiers: average waste %.2f%%", 100*g)
	assert.Greater(t, g, w)
}

// FuzzClassSize compares class lookup for Get and Put with brute force for
// arbitrary class sets.
func FuzzClassSize(f *testing.F) {
	f.Add(uint32(64), uint32(1000), uint32(1100), uint32(1200), uint32(1150))
	f.Add(uint32(16), uint32(17), uint32(20), uint32(1<<20), uint32(18))
	f.Add(uint32(100), uint32(100), uint32(4096), uint32(40000), uint32(40001))
	f.Add(uint32(1<<30), uint32(1<<29), uint32(3<<28), uint32(1<<20), uint32(1<<30-1))
	f.Fuzz(func(t *testing.T, a, b, c, d, n uint32) {
		var sizes []int
		for _, s := range []uint32{a, b, c, d} {
			s = 16 + s%(1<<30-15)
			sizes = append(sizes, int(s))
		}
		p := bufferpool.NewTiered(bufferpool.WithSizes(sizes...))
		got := p.Sizes()
		want := slices.Compact(slices.Sorted(slices.Values(sizes)))
		require.Equal(t, want, got)
		for _, m := range []int{int(n % (1<<30 + 2)), 0, 1} {
			for _, k := range []int{m - 1, m, m + 1} {
				if k < 0 {
					continue
				}
				require.Equal(t, refClass(want, k), p.ClassSize(k), "sizes %v n %d", want, k)
			}
		}
		// Put routing: a buffer with cap between two classes is found
		// again by a request for the lower class. Keep allocations small.
		if want[0] <= 1<<16 {
			capacity := want[0] + int(n%64)
			buf := make([]byte, 0, capacity)
			p.Put(&buf)
			st := p.Stats()
			if capacity > want[len(want)-1] {
				require.Equal(t, uint64(1), st.Drops)
			} else {
				require.Zero(t, st.Drops)
			}
		}
	})
}

func TestDefaultIsShared(t *testing.T) {
	require.Same(t, bufferpool.Default(), bufferpool.Default())
	assert.True(t, strings.HasPrefix(fmt.Sprint(bufferpool.Default().Sizes()[:3]), "[64 80 96"))
}

func TestDebugReportsOption(t *testing.T) {
	require.True(t, bufferpool.NewTiered(bufferpool.WithDebug()).Debug())
	require.False(t, bufferpool.NewTiered().Debug())
	require.False(t, bufferpool.Default().Debug())
}
