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
// Every Tiered keeps [Stats] with atomic counters cheap enough to leave on:
// a warm Get and Put cost two atomic additions each (the counters sit on
// their own cache line, away from the read-only configuration).
// InUseBytes, the capacity handed out and not yet returned, is how the rest of
// readyconn proves that an idle connection owns no buffer.
//
// [Pool] has the same method set as google.golang.org/grpc/mem.BufferPool, so
// a *Tiered can be handed to gRPC and gRPC's pools can be used here.
package bufferpool

import (
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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

// Tiered is a Pool with one sync.Pool per size class. It is safe for
// concurrent use. The zero value is not usable; create one with [NewTiered]
// or use [Default].
type Tiered struct {
	sizes   []int       // ascending class sizes
	pools   []sync.Pool // one per class, holding *[]byte with sizes[i] <= cap < sizes[i+1]
	index   []uint8     // bucket -> first class whose size may fit the bucket
	zeroing bool
	debug   *debugState

	// The counters change on every Get and Put; keep them off the cache
	// line of the fields above, which every Get and Put reads.
	_ [cacheLine]byte
	// gets and puts count calls; InUseBuffers is their difference, so a
	// Get or Put costs two atomic additions, not three.
	gets, puts, allocs, drops atomic.Uint64
	inUseBytes                atomic.Int64
	_                         [cacheLine]byte
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
		sizes:   sizes,
		pools:   make([]sync.Pool, len(sizes)),
		zeroing: cfg.zeroing,
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
// n is larger than every class.
func (t *Tiered) classIndex(n int) int {
	if n > t.sizes[len(t.sizes)-1] {
		return -1
	}
	c := int(t.index[bucket(n)])
	for t.sizes[c] < n {
		c++
	}
	return c
}

// putIndex returns the index of the largest class of size <= c, the class a
// buffer of capacity c is kept in, or -1 if c is below the smallest class or
// above the largest (such buffers are not kept).
func (t *Tiered) putIndex(c int) int {
	i := t.classIndex(c)
	if i >= 0 && t.sizes[i] != c {
		i-- // largest class below c
	}
	return i
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
	if n < 0 {
		panic("bufferpool: Get with negative length")
	}
	var b *[]byte
	if c := t.classIndex(n); c >= 0 {
		if v := t.pools[c].Get(); v != nil {
			b = v.(*[]byte)
			*b = (*b)[:n]
			if t.debug != nil && t.zeroing {
				clear((*b)[:cap(*b)]) // Put poisoned it instead of clearing
			}
		} else {
			s := make([]byte, n, t.sizes[c])
			b = &s
			t.allocs.Add(1)
		}
	} else {
		s := make([]byte, n)
		b = &s
		t.allocs.Add(1)
	}
	t.gets.Add(1)
	t.inUseBytes.Add(int64(cap(*b)))
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
	if t.debug != nil {
		t.debug.put(b)
	}
	t.puts.Add(1)
	t.inUseBytes.Add(-int64(c))
	*b = (*b)[:c]
	switch {
	case t.debug != nil:
		poison(*b) // also overwrites secrets; Get clears under WithZeroing
	case t.zeroing:
		clear(*b)
	}
	i := t.putIndex(c)
	if i < 0 {
		t.drops.Add(1)
		return
	}
	t.pools[i].Put(b)
}

// Stats returns a snapshot of the pool's counters. The fields are read one by
// one, so a snapshot taken while other goroutines call Get and Put need not
// be consistent across fields; it is exact once they are quiet.
func (t *Tiered) Stats() Stats {
	puts := t.puts.Load() // before gets, so that a racing pair never shows InUseBuffers < 0
	gets := t.gets.Load()
	return Stats{
		Gets:         gets,
		Puts:         puts,
		Allocs:       t.allocs.Load(),
		Drops:        t.drops.Load(),
		InUseBuffers: int64(gets - puts),
		InUseBytes:   t.inUseBytes.Load(),
	}
}

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
	pcs = pcs[:runtime.Callers(3, pcs)]
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
