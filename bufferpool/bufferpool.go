// Package bufferpool provides the tiered byte-buffer pool that every layer of
// readyconn takes its memory from.
//
// A [Tiered] pool keeps one [sync.Pool] per size class. Get(n) hands out a
// slice of length n from the smallest class whose size is at least n; Put
// routes a buffer back by its capacity (never its length) to the largest
// class that it can serve. The default classes are four per power of two
// (64, 80, 96, 112, 128, 160, … 786432, 917504, 1048576 bytes), the same
// quarter-octave spacing that memory allocators use. For request sizes spread
// log-uniformly between 64 B and 1 MiB the average waste,
// (capacity − requested) / capacity, is 8.4% (power-of-two classes waste about
// 28%); TestAverageWaste computes the figure exactly. The class of a size is
// found in O(1) from the position of its highest set bit and the two bits
// below it, with no search. (With [WithSizes] classes closer together than a
// quarter of a power of two, the lookup also steps over the few classes that
// share one quarter-octave.)
//
// Requests larger than the largest class are allocated with exactly the
// requested length and are not retained when Put. Buffers whose capacity is
// below the smallest class are dropped on Put.
//
// [Pool] has the same method set as google.golang.org/grpc/mem.BufferPool, so
// a *Tiered can be handed to gRPC and gRPC's pools can be used here.
//
// # Exact statistics at no cost
//
// Every Tiered keeps [Stats]: InUseBytes, the capacity handed out and not
// yet returned, is how the rest of readyconn proves that an idle connection
// owns no buffer, and what an operator watches. Counting is always on, for
// Default too, because it costs nothing measurable. Each P (the runtime's
// processors, GOMAXPROCS of them) keeps its own share of the counters next
// to a cache of at most one buffer per class, the way sync.Pool keeps its
// per-P private slot: Get and Put pin the goroutine to its P (procPin,
// which the runtime keeps available to other packages for this), take or
// leave the buffer, add to that P's counters with plain additions, and
// unpin. There is no atomic read-modify-write, no cache line written by two
// Ps, and one pin per call, as in sync.Pool alone; misses go on to one
// sync.Pool per class. Stats adds the shares up; it is exact whenever Get
// and Put are quiet. For the default classes the class of a size is plain
// arithmetic on its bits, with no table lookup.
//
// Measured on a shared 2-core VM (Go 1.26, median process CPU time per
// Get+Put of a warm buffer, 8 interleaved passes; benchmarks module,
// BenchmarkPoolGetPut): 21–24 ns at every size from 64 B to 1 MiB, the same
// from one goroutine and from both cores at once, against 23–27 ns for
// grpc-go's tiered pool without clearing (0.85–1.0x). The designs measured
// before this one, at 64 B from one goroutine: two atomic additions on one
// shared cache line per Get and per Put, as this package did, 57 ns, and
// 150–350 ns when both cores really run at once; no counters at all, 34 ns;
// per-P counters beside sync.Pool (a second pin per call, about 4 ns each
// here), 46 ns.
//
// The per-P caches are emptied after every garbage collection (a cleanup on
// an object allocated for each cycle), as sync.Pool empties its own, so an
// idle program keeps no pooled buffer for more than a couple of collections.
// Debug pools do not use them. Under the race detector the caches announce
// each hand-over to it and a quarter of Puts bypass them, as in sync.Pool.
//
// Get and Put run on the caller's stack, and readyconn's readers call them
// when they wake, on goroutines that park again keeping whatever stack they
// grew. After every garbage collection the first Get or Put of a class on
// each P runs sync.Pool's slow path (it locks the scheduler and allocates)
// on that stack, the deepest part of a wake-up; so Get and Put call
// sync.Pool from their own frames, kept small (48 and 56 bytes on amd64),
// and leave everything else to helpers.
//
// # Clearing
//
// Default, and NewTiered without [WithZeroing], do not clear buffers: Get
// returns whatever the buffer last held. This is deliberate. The layers of
// readyconn that decrypt (alts, tlsconn) clear the plaintext they used
// before they Put its buffer, which costs in proportion to the bytes used
// and little next to AES-GCM; the plaintext layers (readyreader, framing)
// hold bytes that crossed the wire in the clear. Clearing whole buffers in
// the pool would instead cost every read in proportion to the buffer's
// capacity, measured per Get+Put (WithZeroing against no clearing, same
// run as above): +4 ns at 64 B, +2 ns at 256 B, +39 ns at 4 KiB (2.7x),
// +240 ns at 32 KiB (11x), +6.7 µs at 256 KiB and +26 µs at 1 MiB. grpc-go
// makes the same split: mem.DefaultBufferPool() clears every buffer on Get
// (WithZeroing costs 0.8–1.0x of it like for like, and 0.25x at 256 KiB,
// where grpc-go hands out and clears its 1 MiB tier), while the pools it
// reads its own transport and ALTS records into do not clear. Code that puts
// secrets into a shared pool without clearing them should use a pool built
// WithZeroing.
package bufferpool

import (
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"unsafe"
	"weak"
)

// Pool is a source of byte buffers. It has the method set of
// google.golang.org/grpc/mem.BufferPool.
//
// Get returns a pointer to a slice of length length. The caller owns the
// buffer until it passes the same pointer to Put, exactly once; after Put the
// caller must not touch the slice again.
type Pool interface {
	Get(length int) *[]byte
	Put(*[]byte)
}

// Stats is a snapshot of a Tiered pool's counters.
type Stats struct {
	Gets         uint64 // calls to Get
	Puts         uint64 // calls to Put with a non-nil buffer
	Allocs       uint64 // Gets that had to allocate (pool misses and oversized requests)
	Drops        uint64 // Puts whose buffer was not retained (too small, too large)
	InUseBuffers int64  // Gets − Puts: buffers handed out and not yet returned
	InUseBytes   int64  // total capacity of those buffers
}

// DefaultSizes returns the size classes of [Default] and of a [NewTiered]
// pool built without [WithSizes]: four classes per power of two from 64 B to
// 1 MiB, 57 in all, in ascending order. Each call returns a fresh slice that
// the caller may modify; the pools' own copy cannot be changed.
func DefaultSizes() []int { return slices.Clone(defaultSizeList) }

// defaultSizeList backs DefaultSizes; it is never modified.
var defaultSizeList = defaultSizes()

func defaultSizes() []int {
	s := []int{minBucketSize << 2} // 64
	for k := 6; k < 20; k++ {
		for j := 1; j <= 4; j++ {
			s = append(s, 1<<k+j<<(k-2))
		}
	}
	return s
}

const (
	// minBucketSize is the smallest size the quarter-octave index resolves;
	// every size up to it falls into bucket 0.
	minBucketSize = 16
	minBucketLog  = 4
	// maxClassSize bounds WithSizes.
	maxClassSize = 1 << 30
)

// bucket returns the quarter-octave bucket of n: bucket 0 holds 1..16, and
// bucket b > 0 holds the sizes in (lower(b), upper(b)], where the upper bounds
// are 2^k + j·2^(k-2) for j = 1..4. It uses only the position of the highest
// set bit of n-1 and the two bits below it.
func bucket(n int) int {
	if n <= minBucketSize {
		return 0
	}
	m := uint(n - 1)
	k := bits.Len(m) - 1
	j := int(m>>(k-2)) & 3
	return (k-minBucketLog)*4 + j + 1
}

// bucketUpper is the largest size in bucket b.
func bucketUpper(b int) int {
	if b == 0 {
		return minBucketSize
	}
	k := (b-1)/4 + minBucketLog
	j := (b-1)%4 + 1
	return 1<<k + j<<(k-2)
}

// Tiered is a Pool with one sync.Pool per size class behind a per-P cache of
// one buffer per class. It is safe for concurrent use. The zero value is not usable; create one with [NewTiered]
// or use [Default].
type Tiered struct {
	sizes    []int       // ascending class sizes
	pools    []sync.Pool // one per class, holding *[]byte with sizes[i] <= cap < sizes[i+1]
	index    []uint8     // bucket -> first class whose size may fit the bucket
	smallest int         // sizes[0]
	largest  int         // sizes[len(sizes)-1]
	// run is bucket(sizes[0]) when the classes are consecutive
	// quarter-octave bucket bounds (the default classes are): then the
	// class of n is bucket(n)-run, computed without loading index or sizes.
	// It is -1 otherwise.
	run     int
	zeroing bool
	cache   bool // use the per-P caches (not with WithDebug)
	debug   *debugState
	locals  locals // per-P counters and caches
}

// cacheLine is generous on purpose: some CPUs fetch cache lines in pairs.
const cacheLine = 128

// Option configures a Tiered pool.
type Option func(*config)

type config struct {
	sizes   []int
	zeroing bool
	debug   bool
}

// WithSizes sets the size classes: at least one and at most 255 distinct
// sizes, each between 16 B and 1 GiB. Duplicates are ignored and order does
// not matter; the slice is copied. NewTiered panics on a set outside those
// limits.
func WithSizes(sizes ...int) Option {
	return func(c *config) { c.sizes = slices.Clone(sizes) }
}

// WithZeroing makes Put clear every buffer it is given, retained or dropped,
// so that no secret survives in pooled or garbage memory, and makes every
// buffer Get returns all zeros. Clearing costs time proportional to the
// buffer's capacity on each Put.
func WithZeroing() Option {
	return func(c *config) { c.zeroing = true }
}

// WithDebug turns on checks meant for tests: Put fills the buffer with the
// repeating pattern [Poison] so that use after release reads recognisable
// garbage; a second Put of the same buffer, or a Put of a buffer this pool
// never handed out, panics, as does a Put whose capacity differs from the
// capacity Get handed out (a second Put that comes after the buffer was handed
// out again cannot be told from the new owner's Put and goes undetected); [Tiered.Outstanding] lists the buffers not yet
// returned, with the stack of the Get that took each one. Combined with
// [WithZeroing], Put poisons and Get clears, so both checks keep working.
// Debug pools are slower: every Get and Put takes a lock and records a
// stack.
func WithDebug() Option {
	return func(c *config) { c.debug = true }
}

// Poison is the byte pattern a debug pool writes over every buffer it takes
// back: "\xde\xad\xbe\xef" repeated.
const Poison = "\xde\xad\xbe\xef"

var defaultPool = NewTiered()

// Default returns the process-wide pool with the [DefaultSizes] classes. Every readyconn
// constructor that takes memory from a pool uses it unless given another.
// It keeps exact [Stats] and does not clear buffers (see the package
// documentation for why).
func Default() *Tiered { return defaultPool }

// NewTiered returns a pool configured by opts.
func NewTiered(opts ...Option) *Tiered {
	cfg := config{sizes: defaultSizeList}
	for _, o := range opts {
		o(&cfg)
	}
	sizes := slices.Clone(cfg.sizes)
	sort.Ints(sizes)
	sizes = slices.Compact(sizes)
	if len(sizes) == 0 {
		panic("bufferpool: WithSizes needs at least one size")
	}
	if len(sizes) > 255 {
		panic("bufferpool: at most 255 size classes")
	}
	for _, s := range sizes {
		if s < minBucketSize || s > maxClassSize {
			panic(fmt.Sprintf("bufferpool: class size %d outside [%d, %d]", s, minBucketSize, maxClassSize))
		}
	}
	t := &Tiered{
		sizes:    sizes,
		pools:    make([]sync.Pool, len(sizes)),
		smallest: sizes[0],
		largest:  sizes[len(sizes)-1],
		zeroing:  cfg.zeroing,
		cache:    !cfg.debug,
	}
	t.locals.init(len(sizes), t.cache)
	if t.cache {
		drainEachGC(t)
	}
	if cfg.debug {
		t.debug = &debugState{
			out:      make(map[*byte]outstanding),
			returned: make(map[weak.Pointer[byte]]struct{}),
			sweepAt:  1024,
		}
	}
	// index[b] is the first class able to hold the smallest size of bucket
	// b; classes smaller than the bucket's upper bound may still follow, so
	// classIndex steps forward over them (never more than the number of
	// classes that share one quarter-octave; zero steps for the defaults).
	largest := sizes[len(sizes)-1]
	t.run = bucket(sizes[0])
	for i, s := range sizes {
		if s != bucketUpper(t.run+i) {
			t.run = -1
			break
		}
	}
	t.index = make([]uint8, bucket(largest)+1)
	c := 0
	for b := range t.index {
		lo := 1
		if b > 0 {
			lo = bucketUpper(b-1) + 1
		}
		for c < len(sizes)-1 && sizes[c] < lo {
			c++
		}
		t.index[b] = uint8(c)
	}
	return t
}

// classIndex returns the index of the smallest class of size >= n, or -1 if
// n is larger than every class or negative.
func (t *Tiered) classIndex(n int) int {
	switch {
	case uint(n) > uint(t.largest):
		return -1
	case t.run >= 0:
		return t.runIndex(n)
	}
	return t.tableIndex(n)
}

// tableIndex is classIndex for 0 <= n <= t.largest, for any set of classes.
func (t *Tiered) tableIndex(n int) int {
	c := int(t.index[bucket(n)])
	for t.sizes[c] < n {
		c++
	}
	return c
}

// runIndex is classIndex for 0 <= n <= t.largest when the classes are a run
// of quarter-octave bounds (t.run >= 0): arithmetic only, no load that
// depends on n, and small enough to be inlined into Get.
func (t *Tiered) runIndex(n int) int { return max(bucket(n)-t.run, 0) }

// putIndex returns the index of the largest class of size <= c, the class a
// buffer of capacity c is kept in, or -1 if c is below the smallest class or
// above the largest (such buffers are not kept).
func (t *Tiered) putIndex(c int) int {
	if t.run >= 0 {
		return t.runPutIndex(c)
	}
	i := t.classIndex(c)
	if i >= 0 && t.sizes[i] != c {
		i-- // largest class below c
	}
	return i
}

// runPutIndex is putIndex when t.run >= 0, small enough to be inlined into
// Put. The quarter-octave bounds with l significant bits are 4, 5, 6 and
// 7 times 2^(l-3), so the largest bound <= c is c's top three bits, top,
// followed by zeros; it is the bound of bucket 4l - 24 + top.
func (t *Tiered) runPutIndex(c int) int {
	if c < t.smallest || c > t.largest {
		return -1
	}
	l := bits.Len(uint(c))
	return 4*l - 24 + int(uint(c)>>(l-3)) - t.run
}

// Sizes returns a copy of the pool's class sizes in ascending order.
func (t *Tiered) Sizes() []int { return slices.Clone(t.sizes) }

// ClassSize returns the capacity of the buffer Get(n) returns: the smallest
// class size >= n, or n itself if n is larger than every class.
func (t *Tiered) ClassSize(n int) int {
	if c := t.classIndex(n); c >= 0 {
		return t.sizes[c]
	}
	return n
}

// Get returns a buffer of length n from the smallest class that holds n
// bytes. The buffer's contents are unspecified (all zeros with WithZeroing).
// The caller owns it until it passes the pointer to Put. Get(n) with n larger
// than the largest class allocates exactly n bytes. Get panics if n < 0.
func (t *Tiered) Get(n int) *[]byte {
	if t.cache && uint(n) <= uint(t.largest) {
		var c int
		if t.run >= 0 {
			c = t.runIndex(n)
		} else {
			c = t.tableIndex(n)
		}
		if b := t.locals.take(c); b != nil {
			raceAcquire(b)
			*b = (*b)[:n]
			return b
		}
		// A miss. sync.Pool.Get is called from this frame, which is
		// small, and not from a helper: the first Get of a class on a P
		// after each garbage collection (or on a new pool) runs
		// sync.Pool's pinSlow, which locks the scheduler and allocates,
		// on the caller's stack, and that is the deepest a reader goes
		// when it wakes for bytes. Every frame here is on the stack of
		// a goroutine that parks in the poller with whatever stack it
		// grew (see TestStackGetMiss). What comes after the call is in
		// helpers, which would otherwise enlarge this frame.
		if v := t.pools[c].Get(); v != nil {
			return t.reuse(v.(*[]byte), n)
		}
		return t.alloc(n, c)
	}
	if n < 0 {
		panic("bufferpool: Get with negative length")
	}
	return t.getSlow(n, t.classIndex(n))
}

// reuse is Get's end for a buffer from class c's sync.Pool. (Not inlined:
// inlined, it enlarges Get's frame.)
//
//go:noinline
func (t *Tiered) reuse(b *[]byte, n int) *[]byte {
	*b = (*b)[:n]
	t.locals.got(cap(*b), false)
	return b
}

// alloc is Get's end when class c has no buffer to give.
//
//go:noinline
func (t *Tiered) alloc(n, c int) *[]byte {
	s := make([]byte, n, t.sizes[c])
	t.locals.got(cap(s), true)
	return &s
}

// getSlow is Get for pools without the per-P cache (debug pools) and for
// sizes above the largest class (c < 0): from class c's sync.Pool or, for
// c < 0 or a miss, from the allocator, with the checks of debug pools.
func (t *Tiered) getSlow(n, c int) *[]byte {
	var b *[]byte
	alloc := false
	if c >= 0 {
		if v := t.pools[c].Get(); v != nil {
			b = v.(*[]byte)
			*b = (*b)[:n]
			if t.debug != nil && t.zeroing {
				clear((*b)[:cap(*b)]) // Put poisoned it instead of clearing
			}
		} else {
			s := make([]byte, n, t.sizes[c])
			b = &s
			alloc = true
		}
	} else {
		s := make([]byte, n)
		b = &s
		alloc = true
	}
	t.locals.got(cap(*b), alloc)
	if t.debug != nil {
		t.debug.got(b)
	}
	return b
}

// Put returns a buffer obtained from Get. The slice may have been resliced
// to any length, but must start where Get's did and keep its capacity. The
// buffer is routed by its capacity (never its length) to the largest class
// it can serve; a capacity below the smallest class or above the largest is
// dropped and left to the garbage collector. The caller must not use the
// buffer, or any slice of it, after Put. Put(nil) is a no-op.
//
// Without WithDebug, Put does not check where a buffer came from: a buffer
// from elsewhere is accepted (and skews InUseBuffers and InUseBytes).
func (t *Tiered) Put(b *[]byte) {
	if b == nil {
		return
	}
	c := cap(*b)
	// Checks and clearing are in a helper of their own, so that this
	// frame, on the stack when a Put that finds the P's slot taken runs
	// sync.Pool's slow path (see Get), stays small.
	if t.debug != nil || t.zeroing {
		t.scrub(b)
	}
	*b = (*b)[:c]
	var i int
	if t.run >= 0 {
		i = t.runPutIndex(c)
	} else {
		i = t.putIndex(c)
	}
	if i < 0 {
		t.locals.put(c, true)
		return
	}
	if t.cache && !raceSkipCache() {
		raceRelease(b)
		if t.locals.keep(i, b) {
			return
		}
	} else {
		t.locals.put(c, false)
	}
	t.pools[i].Put(b)
}

// scrub checks b's Put in a debug pool and poisons it, or clears it in a
// zeroing pool.
//
//go:noinline
func (t *Tiered) scrub(b *[]byte) {
	if t.debug != nil {
		t.debug.put(b)
		poison((*b)[:cap(*b)]) // also overwrites secrets; Get clears under WithZeroing
		return
	}
	clear((*b)[:cap(*b)])
}

// Stats returns a snapshot of the pool's counters. Each P keeps its own
// share, and Stats adds them up; a snapshot taken while other goroutines call
// Get and Put need not be consistent across fields (InUseBuffers may even be
// briefly negative), but it is exact once they are quiet.
func (t *Tiered) Stats() Stats { return t.locals.sum() }

// poison fills b with repetitions of Poison, doubling each copy.
func poison(b []byte) {
	n := copy(b, Poison)
	for n < len(b) {
		n += copy(b[n:], b[:n])
	}
}

// Outstanding describes a buffer handed out by a debug pool and not yet
// returned.
type Outstanding struct {
	Cap   int    // capacity of the buffer
	Stack string // where Get was called
}

// Debug reports whether the pool was built with [WithDebug]. Layers that
// hand out views of pooled memory use it to add checks of their own.
func (t *Tiered) Debug() bool { return t.debug != nil }

// Outstanding lists the buffers a debug pool has handed out and not taken
// back, for leak reports. It returns nil for a pool without WithDebug.
func (t *Tiered) Outstanding() []Outstanding {
	if t.debug == nil {
		return nil
	}
	t.debug.mu.Lock()
	defer t.debug.mu.Unlock()
	out := make([]Outstanding, 0, len(t.debug.out))
	for _, o := range t.debug.out {
		out = append(out, Outstanding{Cap: o.cap, Stack: formatStack(o.pcs)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stack < out[j].Stack })
	return out
}

type outstanding struct {
	cap int
	pcs []uintptr
}

type debugState struct {
	mu  sync.Mutex
	out map[*byte]outstanding // keyed by the first byte of the backing array
	// returned remembers buffers taken back, to tell a double Put from a
	// foreign one. Weak keys let the collector free buffers sync.Pool drops;
	// their dead entries are swept once the map doubles past sweepAt.
	returned map[weak.Pointer[byte]]struct{}
	sweepAt  int
}

// sweep deletes the entries of buffers the collector has freed. d.mu is held.
func (d *debugState) sweep() {
	for w := range d.returned {
		if w.Value() == nil {
			delete(d.returned, w)
		}
	}
	d.sweepAt = max(2*len(d.returned), 1024)
}

func key(b *[]byte) *byte {
	if cap(*b) == 0 {
		return nil
	}
	return unsafe.SliceData(*b)
}

func (d *debugState) got(b *[]byte) {
	k := key(b)
	if k == nil {
		return
	}
	pcs := make([]uintptr, 16)
	pcs = pcs[:runtime.Callers(4, pcs)] // skip Callers, got, getSlow and Get
	d.mu.Lock()
	d.out[k] = outstanding{cap: cap(*b), pcs: pcs}
	delete(d.returned, weak.Make(k))
	d.mu.Unlock()
}

func (d *debugState) put(b *[]byte) {
	k := key(b)
	if k == nil {
		panic("bufferpool: Put of a zero-capacity buffer that this pool did not hand out")
	}
	d.mu.Lock()
	o, ok := d.out[k]
	_, again := d.returned[weak.Make(k)]
	if ok {
		delete(d.out, k)
		d.returned[weak.Make(k)] = struct{}{}
		if len(d.returned) >= d.sweepAt {
			d.sweep()
		}
	}
	d.mu.Unlock()
	switch {
	case again:
		panic(fmt.Sprintf("bufferpool: double Put of a buffer (cap %d) that was already returned to this pool", cap(*b)))
	case !ok:
		panic(fmt.Sprintf("bufferpool: Put of a buffer (cap %d) that this pool did not hand out", cap(*b)))
	}
	if o.cap != cap(*b) {
		panic(fmt.Sprintf("bufferpool: Put of a buffer with cap %d that was handed out with cap %d", cap(*b), o.cap))
	}
}

func formatStack(pcs []uintptr) string {
	var sb strings.Builder
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		fmt.Fprintf(&sb, "%s\n\t%s:%d\n", f.Function, f.File, f.Line)
		if !more {
			break
		}
	}
	return sb.String()
}
