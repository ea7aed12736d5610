package testnet

import (
	"runtime"
	"sync"
	"testing"
	"weak"
)

// ForgetPool is a buffer pool (a bufferpool.Pool) that allocates every
// buffer and retains none: Put keeps only a weak pointer to the buffer's
// memory. A layer that gave a buffer back but still refers to it (an empty
// slice into it, say) keeps that memory alive behind a real pool's
// counters, which report it as returned; with a ForgetPool,
// RequireUnreferenced catches it. The zero value is ready to use and safe
// for concurrent use.
type ForgetPool struct {
	mu    sync.Mutex
	inUse int64
	put   []weak.Pointer[byte]
}

// Get returns a new buffer of length n.
func (p *ForgetPool) Get(n int) *[]byte {
	// At least 64 bytes: smaller pointer-free objects may share a block
	// with others (the tiny allocator) and live as long as they do.
	b := make([]byte, n, max(n, 64))
	p.mu.Lock()
	p.inUse += int64(cap(b))
	p.mu.Unlock()
	return &b
}

// Put forgets b, keeping a weak pointer to its memory.
func (p *ForgetPool) Put(b *[]byte) {
	if b == nil {
		return
	}
	p.mu.Lock()
	p.inUse -= int64(cap(*b))
	p.put = append(p.put, weak.Make(&(*b)[:1][0]))
	p.mu.Unlock()
}

// InUseBytes is the capacity of the buffers handed out and not given back.
func (p *ForgetPool) InUseBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}

// RequireUnreferenced collects garbage and fails tb unless at least one
// buffer was given back and every buffer given back is unreachable.
func (p *ForgetPool) RequireUnreferenced(tb testing.TB) {
	tb.Helper()
	runtime.GC()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.put) == 0 {
		tb.Fatal("no buffer was given back to the pool")
	}
	for i, w := range p.put {
		if w.Value() != nil {
			tb.Errorf("buffer %d of %d given back to the pool is still referenced", i+1, len(p.put))
		}
	}
}
