// Package stacktest checks how deep a wait path goes, for tests.
//
// A goroutine that parks for as long as its connection is idle keeps the
// stack it has grown: the runtime shrinks a parked goroutine's stack only
// while it uses less than a quarter of it (plus a guard of about 800 B), and
// the runtime's own frames of a parked read already use about 300 B, so a
// reader whose stack once grew from 2 KiB to 4 KiB keeps 4 KiB while idle.
// [Grew] runs a function on a fresh goroutine after using a chosen amount of
// its stack, and reports whether anything the function did (waking, reading,
// decrypting, parking again) grew that stack. Tests call it with the
// headroom the library promises, and once with far more to prove that the
// check can fail.
//
// The result is meaningful only where goroutines start with the minimum
// stack. The runtime's adaptive start size (GODEBUG adaptivestackstart)
// starts them larger after a process has seen deep stacks, so tests call
// [InChild] to re-run themselves in a child process with
// GODEBUG=adaptivestackstart=0 (and memprofilerate=0: heap profiling
// records a stack trace, on the allocating goroutine's stack, for a random
// sample of allocations).
package stacktest

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/readyconn/readyconn/internal/israce"
	"github.com/readyconn/readyconn/internal/testnet"
)

// childEnv marks the child process that InChild starts.
const childEnv = "READYCONN_STACKTEST_CHILD"

// InChild reports whether the test runs in the child process that InChild
// starts. Under the race detector, whose instrumentation enlarges every
// frame, it skips the test. In the parent it runs the test named t.Name() again in a child
// process of the test binary with GODEBUG=adaptivestackstart=0, fails t if
// the child fails (with its output), and returns false: the parent then
// returns. The child runs with -test.count=1 and without -test.fuzz.
//
//	func TestParkHeadroom(t *testing.T) {
//		if !stacktest.InChild(t) {
//			return
//		}
//		// ... the checks, with goroutines starting at 2 KiB
//	}
func InChild(t *testing.T) bool {
	t.Helper()
	if israce.Enabled {
		t.Skip("the race detector enlarges stack frames; .ci/run runs stack tests without -race")
	}
	if os.Getenv(childEnv) == t.Name() {
		return true
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("stacktest: cannot find the test binary: %v", err)
	}
	args := []string{"-test.run=^" + strings.ReplaceAll(regexpQuote(t.Name()), "/", "$/^") + "$", "-test.count=1", "-test.v"}
	cmd := exec.Command(exe, args...)
	env := []string{childEnv + "=" + t.Name()}
	// Goroutines start at the minimum stack; no allocation is sampled for
	// the heap profile (a sampled allocation records a stack trace, deep
	// on the allocating goroutine's stack, at random).
	godebug := "adaptivestackstart=0,memprofilerate=0"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, childEnv+"="):
		case strings.HasPrefix(kv, "GODEBUG="):
			godebug = strings.TrimPrefix(kv, "GODEBUG=") + "," + godebug
		default:
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "GODEBUG="+godebug)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("stacktest: child process for %s failed: %v\n%s", t.Name(), err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("stacktest: child process did not run %s:\n%s", t.Name(), out)
	}
	return false
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// FixedStart reports whether goroutines of this process start with the
// minimum stack (GODEBUG=adaptivestackstart=0, as InChild arranges).
func FixedStart() bool {
	return strings.Contains(os.Getenv("GODEBUG"), "adaptivestackstart=0")
}

// Grew runs f on a new goroutine after that goroutine has used at least
// burn bytes of stack below its entry frame, waits for f to return, and
// reports whether the goroutine's stack was moved meanwhile, which for a
// goroutine that started with the minimum stack means it grew.
//
// f typically reads one message (so the wake, decrypt and delivery paths
// run) and then blocks in a second read until the test sends more or closes
// the connection: Grew then covers everything the goroutine does while a
// connection goes from busy to idle.
func Grew(burn int, f func()) bool {
	// No garbage collection meanwhile: an allocation that assists the
	// collector runs marking work on the allocating goroutine's stack,
	// which would make the result depend on the collector's timing. (The
	// wait paths this measures allocate nothing in steady state.)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	done := make(chan bool, 1)
	go func() {
		var anchor [8]byte
		before := uintptr(unsafe.Pointer(&anchor))
		burnStack(before, uintptr(burn), f)
		after := uintptr(unsafe.Pointer(&anchor))
		runtime.KeepAlive(&anchor)
		done <- before != after
	}()
	return <-done
}

// burnStack calls itself, 64 bytes of locals at a time, until the stack
// pointer is at least n bytes below top, then calls f.
//
//go:noinline
func burnStack(top, n uintptr, f func()) {
	var pad [64]byte
	if top-uintptr(unsafe.Pointer(&pad[0])) < n {
		burnStack(top, n, f)
		runtime.KeepAlive(&pad)
		return
	}
	f()
}

// Headroom returns the largest burn below 2 KiB, to 8 bytes, for which grew
// reports false: how much of a 2 KiB stack a wait path leaves to its
// callers. grew is called with a burn and reports whether the stack grew
// (typically by calling Grew); it must grow for larger burns once it does
// for one.
func Headroom(grew func(burn int) bool) int {
	lo, hi := 0, 2048
	for lo+8 < hi {
		mid := (lo + hi) / 2
		if grew(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return lo
}

// GrewAcrossIdle is Grew for a connection going from busy to idle and back:
// on a goroutine with burn bytes of stack used it calls read twice. The
// first read takes a message that send has already sent; the second parks
// (in a function whose name contains parked, see testnet.WaitParked) until,
// after idle has run if it is not nil, send sends another. A send that
// fails panics, as read must when it fails.
func GrewAcrossIdle(tb testing.TB, burn int, parked string, send func() error, idle func(), read func()) bool {
	tb.Helper()
	var first atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := send(); err != nil {
			panic(err)
		}
		for !first.Load() {
			time.Sleep(time.Millisecond)
		}
		testnet.WaitParked(tb, parked)
		if idle != nil {
			idle()
		}
		if err := send(); err != nil {
			panic(err)
		}
	}()
	g := Grew(burn, func() {
		read()
		first.Store(true)
		read()
	})
	<-done
	return g
}
