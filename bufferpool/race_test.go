//go:build race

package bufferpool_test

// raceEnabled reports whether the race detector is on. Under it sync.Pool
// drops a quarter of Puts on purpose, so warm Gets may allocate.
const raceEnabled = true
