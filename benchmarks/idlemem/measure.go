package main

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"time"

	"github.com/readyconn/readyconn/bufferpool"
)

// result is what one mode measured at one N. Per-connection figures cover
// both ends of a connection (client side and server side).
type result struct {
	Mode        string `json:"mode"`
	Description string `json:"description"`
	N           int    `json:"n"`
	phase
	// StackStartBytes is the size new goroutines started with when the
	// measurement was taken (runtime/metrics /gc/stack/starting-size:bytes):
	// 2048 unless the runtime's adaptive start size is on.
	StackStartBytes uint64   `json:"stack_start_bytes"`
	RatioToFloor    *float64 `json:"ratio_to_floor,omitempty"`
	OpenSeconds     float64  `json:"open_seconds"`
	BurstSeconds    float64  `json:"burst_seconds,omitempty"`
	// AfterBurst is the same measurement after opts.Burst bytes went each
	// way through every connection; nil for modes without a burst.
	AfterBurst *phase `json:"after_burst,omitempty"`
}

// phase is one measurement of all connections while idle.
type phase struct {
	HeapPerConn       float64 `json:"heap_inuse_bytes_per_conn"`
	StackPerConn      float64 `json:"stack_inuse_bytes_per_conn"`
	TotalPerConn      float64 `json:"total_bytes_per_conn"`
	HeapAllocPerConn  float64 `json:"heap_alloc_bytes_per_conn"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
	// PoolInUseBytes is the mode's bufferpool InUseBytes (all connections
	// together) while every connection is idle; nil for modes that do not
	// take buffers from a readyconn pool.
	PoolInUseBytes *int64 `json:"pool_in_use_bytes"`
}

// settleDelay is how long measure waits after the last connection finished
// its exchange, so that every reader goroutine has gone from "signalled
// ready" to parked in its read.
const settleDelay = 100 * time.Millisecond

// measure opens n connections of mode m, measures what they hold while idle
// (and again after a burst, for modes that carry one and opts.Burst > 0),
// closes them and checks that every goroutine the mode started has ended.
// progress, if not nil, is called with a function reporting how many
// connections are open, and must return a stop function.
func measure(m mode, n int, opts options, progress func(opened func() int64) (stop func())) (result, error) {
	if n <= 0 {
		return result{}, fmt.Errorf("n must be positive, got %d", n)
	}
	if opts.Msg <= 0 {
		return result{}, fmt.Errorf("message size must be positive, got %d", opts.Msg)
	}
	pool := bufferpool.NewTiered()
	if m.defaultPool {
		pool = bufferpool.Default()
	}
	e := newEnv(n, pool, opts)
	before := snapshot()
	stop := func() {}
	if progress != nil {
		stop = progress(e.opened.Load)
	}
	start := time.Now()
	err := m.open(e)
	openTime := time.Since(start)
	stop()
	fail := func(err error) (result, error) {
		if cerr := e.closeAll(); cerr != nil {
			err = fmt.Errorf("%w (and closing: %v)", err, cerr)
		}
		return result{}, fmt.Errorf("mode %s: %w", m.name, err)
	}
	if err != nil {
		return fail(err)
	}
	r := result{Mode: m.name, Description: m.desc, N: n, OpenSeconds: openTime.Seconds()}
	r.phase, r.StackStartBytes = idle(m, n, pool, before)
	if e.burst != nil && opts.Burst > 0 {
		start := time.Now()
		if err := e.burst(); err != nil {
			return fail(err)
		}
		r.BurstSeconds = time.Since(start).Seconds()
		p, _ := idle(m, n, pool, before)
		r.AfterBurst = &p
	}

	if err := e.closeAll(); err != nil {
		return result{}, fmt.Errorf("mode %s: close: %w", m.name, err)
	}
	if err := waitGoroutines(before.goroutines, 10*time.Second); err != nil {
		return result{}, fmt.Errorf("mode %s: %w", m.name, err)
	}
	if left := pool.Stats().InUseBytes; m.usesPool && left != 0 {
		return result{}, fmt.Errorf("mode %s: pool still has %d bytes in use after every connection was closed", m.name, left)
	}
	return r, nil
}

// idle waits for the connections to settle and measures them against the
// baseline before.
func idle(m mode, n int, pool *bufferpool.Tiered, before memSnapshot) (phase, uint64) {
	time.Sleep(settleDelay)
	after := snapshot()
	inUse := pool.Stats().InUseBytes
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	p := phase{
		HeapPerConn:       per(after.heapInuse, before.heapInuse),
		StackPerConn:      per(after.stackInuse, before.stackInuse),
		HeapAllocPerConn:  per(after.heapAlloc, before.heapAlloc),
		GoroutinesPerConn: float64(after.goroutines-before.goroutines) / float64(n),
	}
	p.TotalPerConn = p.HeapPerConn + p.StackPerConn
	if m.usesPool {
		p.PoolInUseBytes = &inUse
	}
	return p, after.stackStart
}

type memSnapshot struct {
	heapInuse, stackInuse, heapAlloc uint64
	stackStart                       uint64
	goroutines                       int
}

// stackStartMetric is the runtime metric of the size new goroutines start
// with.
const stackStartMetric = "/gc/stack/starting-size:bytes"

// snapshot collects garbage twice (the second cycle frees what sync.Pool
// victim caches kept through the first) and reads the runtime's counters.
func snapshot() memSnapshot {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	start := []metrics.Sample{{Name: stackStartMetric}}
	metrics.Read(start)
	var stackStart uint64
	if start[0].Value.Kind() == metrics.KindUint64 {
		stackStart = start[0].Value.Uint64()
	}
	return memSnapshot{
		heapInuse:  ms.HeapInuse,
		stackInuse: ms.StackInuse,
		heapAlloc:  ms.HeapAlloc,
		stackStart: stackStart,
		goroutines: runtime.NumGoroutine(),
	}
}

// waitGoroutines waits until no more than want goroutines are running, and
// otherwise fails with a dump of the goroutines that are left.
func waitGoroutines(want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got := runtime.NumGoroutine()
		if got <= want {
			return nil
		}
		if time.Now().After(deadline) {
			var buf bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
			return fmt.Errorf("%d goroutines still running %v after close (baseline %d):\n%s",
				got, timeout, want, truncate(buf.String(), 8<<10))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n…"
}

// progressTo returns a progress function for measure that redraws one line
// on w, a terminal, every 100 ms while connections are being opened, and
// clears it at the end.
func progressTo(w io.Writer, label string, n int) func(opened func() int64) func() {
	return func(opened func() int64) func() {
		done := make(chan struct{})
		exited := make(chan struct{})
		draw := func() { fmt.Fprintf(w, "\r\033[Kidlemem: %s %6d/%d connections open", label, opened(), n) }
		go func() {
			defer close(exited)
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				draw()
				select {
				case <-done:
					fmt.Fprint(w, "\r\033[K")
					return
				case <-t.C:
				}
			}
		}()
		return func() { close(done); <-exited }
	}
}
