// Package cputime reports the CPU time a benchmark's process spends per
// operation, next to the wall-clock ns/op.
//
// On a shared machine wall-clock time swings with what else runs; the CPU
// time the benchmark's own process consumes (user + system, all threads,
// from getrusage on Unix and GetProcessTimes on Windows) moves much less.
// It counts everything the process does for the operation: both ends of a
// loopback connection, the garbage collector, the runtime's poller.
//
//	func BenchmarkX(b *testing.B) {
//		setup()
//		b.ResetTimer()
//		defer cputime.Start(b).Stop() // reports cpu-ns/op
//		for range b.N { ... }
//	}
//
// Compare two implementations with interleaved passes and benchstat on the
// cpu-ns/op column (see benchmarks/README.md).
package cputime

import (
	"testing"
	"time"
)

// Unit is the metric name Stop reports.
const Unit = "cpu-ns/op"

// Timer measures the process CPU time between Start and Stop.
type Timer struct {
	b     *testing.B
	start time.Duration
	ok    bool
}

// Start begins measuring. Call it right before the timed loop, after any
// b.ResetTimer.
func Start(b *testing.B) *Timer {
	t, ok := processCPU()
	return &Timer{b: b, start: t, ok: ok}
}

// Stop ends the measurement and reports the CPU time per b.N operation as
// cpu-ns/op. Where the platform has no process CPU clock it reports
// nothing.
func (t *Timer) Stop() {
	end, ok := processCPU()
	if !t.ok || !ok || t.b.N == 0 {
		return
	}
	t.b.ReportMetric(float64(end-t.start)/float64(t.b.N), Unit)
}

// Process returns the CPU time (user + system) the process has used so far,
// and false where it cannot be read.
func Process() (time.Duration, bool) { return processCPU() }
