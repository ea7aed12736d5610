//go:build !race

package bufferpool

func raceRelease(*[]byte) {}
func raceAcquire(*[]byte) {}
func raceSkipCache() bool { return false }
