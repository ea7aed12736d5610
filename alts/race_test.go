//go:build race

package alts

// raceEnabled reports whether the race detector is on. Under it sync.Pool
// drops a quarter of Puts on purpose, so warm pool Gets may allocate and
// allocation counts are not exact.
const raceEnabled = true
