package bufferpool

import (
	"runtime"
	"sync/atomic"
	"unsafe"
	"weak"
)

// This file holds what each P (the runtime's processor, one per
// GOMAXPROCS) keeps for a Tiered pool: its share of the counters and a cache
// of at most one buffer per class. Both are touched only by the goroutine
// running on that P, between procPin and procUnpin, so plain loads and
// stores are enough: no goroutine can be preempted, and no other goroutine
// can run on the P, while it is pinned. That is the mechanism sync.Pool uses
// for its per-P private slot; the runtime keeps procPin and procUnpin
// available to packages outside the standard library for exactly this
// (go.dev/issue/67401).
//
// The race detector cannot see that exclusion, so the functions that touch
// per-P state are marked //go:norace, and handing a buffer from Put to Get
// through the cache is announced to it (raceRelease, raceAcquire) as
// sync.Pool does.

//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// counts is one P's share of a pool's Stats. InUseBytes may be negative in
// one share (a buffer taken on one P and returned on another); the sum is
// exact.
type counts struct {
	gets, puts, allocs, drops uint64
	inUseBytes                int64
}

type localData struct {
	counts
	// cache holds at most one buffer per class (index as Tiered.sizes),
	// taken by the next Get of that class on this P. Its backing array is
	// allocated on its own and at least 128 bytes long, so no two Ps'
	// caches share a cache line.
	cache []*[]byte
}

// local is padded to a multiple of cacheLine so that two Ps' counters never
// share a cache line (the data is under half a line long).
type local struct {
	localData
	_ [cacheLine - unsafe.Sizeof(localData{})%cacheLine]byte
}

// locals is the per-P state of a pool.
type locals struct {
	ps []local // one per P id below len(ps); fixed at creation
	// spill counts, with atomic adds, for Ps whose id is beyond len(ps):
	// only when GOMAXPROCS is raised above both its value at creation and
	// the number of CPUs.
	spill struct {
		gets, puts, allocs, drops atomic.Uint64
		inUseBytes                atomic.Int64
	}
}

func (l *locals) init(classes int, cache bool) {
	l.ps = make([]local, max(runtime.GOMAXPROCS(0), runtime.NumCPU()))
	if !cache {
		return
	}
	n := 16 // 128 bytes of pointers on 64-bit platforms
	for n < classes {
		n *= 2
	}
	for i := range l.ps {
		l.ps[i].cache = make([]*[]byte, classes, n)
	}
}

// take returns the cached buffer of class c on the current P and counts the
// Get, or returns nil (counting nothing) when there is none.
//
//go:norace
func (l *locals) take(c int) *[]byte {
	id := procPin()
	if id < len(l.ps) {
		p := &l.ps[id]
		if b := p.cache[c]; b != nil {
			p.cache[c] = nil
			p.gets++
			p.inUseBytes += int64(cap(*b))
			procUnpin()
			return b
		}
	}
	procUnpin()
	return nil
}

// keep counts the Put of b, a buffer of class c, and caches it on the
// current P if that P's slot for c is free. It reports whether it kept b.
//
//go:norace
func (l *locals) keep(c int, b *[]byte) bool {
	capacity := int64(cap(*b))
	id := procPin()
	if id < len(l.ps) {
		p := &l.ps[id]
		p.puts++
		p.inUseBytes -= capacity
		kept := p.cache[c] == nil
		if kept {
			p.cache[c] = b
		}
		procUnpin()
		return kept
	}
	procUnpin()
	l.spill.puts.Add(1)
	l.spill.inUseBytes.Add(-capacity)
	return false
}

// got counts a Get that did not come from the cache.
//
//go:norace
func (l *locals) got(capacity int, alloc bool) {
	id := procPin()
	if id < len(l.ps) {
		p := &l.ps[id]
		p.gets++
		p.inUseBytes += int64(capacity)
		if alloc {
			p.allocs++
		}
		procUnpin()
		return
	}
	procUnpin()
	l.spill.gets.Add(1)
	l.spill.inUseBytes.Add(int64(capacity))
	if alloc {
		l.spill.allocs.Add(1)
	}
}

// put counts a Put that does not go to the cache.
//
//go:norace
func (l *locals) put(capacity int, drop bool) {
	id := procPin()
	if id < len(l.ps) {
		p := &l.ps[id]
		p.puts++
		p.inUseBytes -= int64(capacity)
		if drop {
			p.drops++
		}
		procUnpin()
		return
	}
	procUnpin()
	l.spill.puts.Add(1)
	l.spill.inUseBytes.Add(-int64(capacity))
	if drop {
		l.spill.drops.Add(1)
	}
}

// sum adds up every P's counters. It reads them while their Ps may be
// writing them: each word read is one the P wrote (64-bit platforms) and
// the total is exact once Get and Put have stopped, which is what Stats
// promises.
//
//go:norace
func (l *locals) sum() Stats {
	var s counts
	for i := range l.ps {
		p := &l.ps[i].counts
		s.gets += p.gets
		s.puts += p.puts
		s.allocs += p.allocs
		s.drops += p.drops
		s.inUseBytes += p.inUseBytes
	}
	s.gets += l.spill.gets.Load()
	s.puts += l.spill.puts.Load()
	s.allocs += l.spill.allocs.Load()
	s.drops += l.spill.drops.Load()
	s.inUseBytes += l.spill.inUseBytes.Load()
	return Stats{
		Gets:         s.gets,
		Puts:         s.puts,
		Allocs:       s.allocs,
		Drops:        s.drops,
		InUseBuffers: int64(s.gets - s.puts),
		InUseBytes:   s.inUseBytes,
	}
}

// drain empties every P's cache, so that the garbage collector can free
// what they held. It runs on the runtime's cleanup goroutine while the Ps
// may be using their caches. It only ever stores nil, one pointer-sized
// word at a time, and a P only hands out a buffer it read from its own
// slot and cleared there itself, so a drain racing with a take or a keep
// can at worst leave a buffer cached until the next drain; it can never
// hand a buffer out twice.
//
//go:norace
func (l *locals) drain() {
	for i := range l.ps {
		cache := l.ps[i].cache
		for c := range cache {
			if cache[c] != nil {
				atomic.StorePointer((*unsafe.Pointer)(unsafe.Pointer(&cache[c])), nil)
			}
		}
	}
}

// gcTick is an object nothing refers to; its cleanup runs once per garbage
// collection cycle. (It holds a pointer so that it is not a tiny
// allocation, whose cleanups may be delayed.)
type gcTick struct {
	_ *byte
	_ uintptr
}

// drainEachGC empties t's per-P caches after every garbage collection, as
// sync.Pool drops its own per-P slots, until t itself is collected. Without
// it an idle program would keep up to one buffer per class per P forever.
func drainEachGC(t *Tiered) {
	runtime.AddCleanup(&gcTick{}, func(w weak.Pointer[Tiered]) {
		if t := w.Value(); t != nil {
			t.locals.drain()
			drainEachGC(t)
		}
	}, weak.Make(t))
}
