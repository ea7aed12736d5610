//go:build race

package bufferpool

const raceEnabled = true
