//go:build !race

package bufferpool_test

const raceEnabled = false
