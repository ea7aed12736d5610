//go:build !race

package alts

const raceEnabled = false
