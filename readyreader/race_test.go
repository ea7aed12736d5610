//go:build race

package readyreader_test

// raceEnabled reports whether the race detector is on. Its instrumentation
// deepens every frame and doubles the stack guard, so stack-depth checks
// skip under it, and sync.Pool drops Puts at random, so warm Gets may
// allocate.
const raceEnabled = true
