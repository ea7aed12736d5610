//go:build race

package bufferpool

import (
	"math/rand/v2"
	"runtime"
	"unsafe"
)

// raceHash holds the addresses the race detector synchronises on, as in
// sync.Pool: a Put that caches a buffer releases its address, the Get that
// takes it acquires it, so accesses before the Put happen before accesses
// after the Get.
var raceHash [128]uint64

func raceAddr(b *[]byte) unsafe.Pointer {
	h := uint32((uint64(uint32(uintptr(unsafe.Pointer(b)))) * 0x85ebca6b) >> 16)
	return unsafe.Pointer(&raceHash[h%uint32(len(raceHash))])
}

func raceRelease(b *[]byte) { runtime.RaceReleaseMerge(raceAddr(b)) }
func raceAcquire(b *[]byte) { runtime.RaceAcquire(raceAddr(b)) }

// raceSkipCache makes a quarter of Puts bypass the per-P cache under the
// race detector, as sync.Pool drops a quarter of its Puts, so that code
// relying on getting its own buffer back fails in tests.
func raceSkipCache() bool { return rand.N(4) == 0 }
