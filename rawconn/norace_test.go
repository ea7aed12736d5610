//go:build !race

package rawconn_test

const raceEnabled = false
