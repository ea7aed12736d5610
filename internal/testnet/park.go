package testnet

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// parkTimeout bounds how long WaitParked and WaitBlocked look for the
// goroutine. It is generous: a loaded CI machine may take long to schedule
// the goroutine that is about to park.
const parkTimeout = 30 * time.Second

// WaitParked waits until some goroutine is parked in the network poller
// ("IO wait") with fn (a substring of a function name, such as
// "rawconn.(*Reader).ReadOnReady") on its stack, and fails the test if none
// is within 30 s. It proves that a reader has really parked, which a sleep
// cannot: tests that check what an idle reader holds call it first.
func WaitParked(tb testing.TB, fn string) {
	tb.Helper()
	waitState(tb, fn, "[IO wait")
}

// WaitBlocked is WaitParked for any blocked state: the network poller, a
// channel operation, a select or a mutex.
func WaitBlocked(tb testing.TB, fn string) {
	tb.Helper()
	waitState(tb, fn, "[IO wait", "[select", "[chan ", "[sync.Mutex", "[sync.Cond")
}

// Parked reports whether some goroutine is blocked in one of the states
// (the bracketed state of a goroutine dump, such as "[IO wait") with fn on
// its stack, at the moment of the call.
func Parked(fn string, states ...string) bool { return CountParked(fn, states...) > 0 }

// CountParked counts the goroutines blocked in one of the states with fn on
// their stack, at the moment of the call.
func CountParked(fn string, states ...string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, fn) {
			continue
		}
		for _, s := range states {
			if strings.Contains(g, s) {
				count++
				break
			}
		}
	}
	return count
}

func waitState(tb testing.TB, fn string, states ...string) {
	tb.Helper()
	deadline := time.Now().Add(parkTimeout)
	for !Parked(fn, states...) {
		if time.Now().After(deadline) {
			tb.Fatalf("no goroutine blocked (%s) in %s after %v", strings.Join(states, ", "), fn, parkTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}
