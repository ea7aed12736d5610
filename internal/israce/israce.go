//go:build !race

// Package israce reports whether the race detector is on. Under it
// sync.Pool drops Puts at random, so tests that count allocations skip
// (.ci/run runs them once more without -race).
package israce

// Enabled reports whether the race detector is on.
const Enabled = false
