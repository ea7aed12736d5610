//go:build !race

package readyreader_test

const raceEnabled = false
