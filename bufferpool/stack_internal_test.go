package bufferpool

import (
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// missDepth is where the New function of the sync.Pool being tested last
// found its stack: the address of one of its locals, and the functions
// above it.
var missDepth struct {
	at    uintptr
	stack []string
}

//go:noinline
func recordMiss() any {
	var local [8]byte
	missDepth.at = uintptr(unsafe.Pointer(&local[0]))
	runtime.KeepAlive(&local)
	pcs := make([]uintptr, 4)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)]) // skip Callers and recordMiss
	missDepth.stack = missDepth.stack[:0]
	for {
		f, more := frames.Next()
		missDepth.stack = append(missDepth.stack, f.Function)
		if !more {
			break
		}
	}
	return nil // so that Get goes on to allocate
}

// getVia and syncGetVia call Get and sync.Pool.Get from frames of the same
// shape, so that the depths of their callees can be compared.
//
//go:noinline
func getVia(t *Tiered, n int) *[]byte { return t.Get(n) }

//go:noinline
func syncGetVia(p *sync.Pool, _ int) any { return p.Get() }

// TestStackGetMiss checks how much stack a Get that misses the per-P cache
// adds above sync.Pool.Get. After every garbage collection the first Get of
// a class on each P runs sync.Pool's slow path (pinSlow, which takes the
// scheduler lock and allocates), the deepest thing a reader's wake-up does;
// rawconn takes its buffers in a frame kept small for that reason, and
// readyreader's TestParkHeadroom fails when Get adds a frame of its own
// (getSlow, 64 bytes on amd64, did). So Get calls sync.Pool.Get from its
// own frame, which must stay small.
func TestStackGetMiss(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector enlarges stack frames")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no stack shrinking
	p := NewTiered()
	const n = 100
	c := p.classIndex(n)
	p.pools[c].New = recordMiss
	var ref sync.Pool
	ref.New = recordMiss

	var viaGet, viaSync uintptr
	var stack []string
	var b *[]byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Grow this goroutine's stack first, so that it does not move
		// between the two measurements.
		growStack(16 << 10)
		// A fresh pool: the cache is empty and sync.Pool has not been
		// used, so sync.Pool.Get runs its slow path, then New.
		b = getVia(p, n)
		viaGet, stack = missDepth.at, slices.Clone(missDepth.stack)
		syncGetVia(&ref, n)
		viaSync = missDepth.at
	}()
	<-done
	require.NotNil(t, b)
	p.Put(b)
	require.GreaterOrEqual(t, len(stack), 3, "%q", stack)
	assert.Equal(t, []string{
		"sync.(*Pool).Get",
		"github.com/readyconn/readyconn/bufferpool.(*Tiered).Get",
		"github.com/readyconn/readyconn/bufferpool.getVia",
	}, stack[:3], "Get must call sync.Pool.Get from its own frame")
	added := int(viaSync) - int(viaGet)
	t.Logf("Get adds %d bytes of stack above sync.Pool.Get", added)
	word := int(unsafe.Sizeof(uintptr(0)))
	assert.Positive(t, added)
	assert.LessOrEqual(t, added, 10*word, "Get's frame, on the stack while sync.Pool's slow path runs")
}

// growStack uses about n bytes of stack and returns.
//
//go:noinline
func growStack(n int) byte {
	var pad [256]byte
	pad[n%256] = byte(n)
	if n > 256 {
		return growStack(n-256) + pad[0]
	}
	return pad[1]
}
