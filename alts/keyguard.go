package alts

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"sync"
)

// keyHistory is how many keys NewConn remembers per process to refuse
// their reuse: 1024 fingerprints of 16 bytes, 16 KiB, allocated on the
// first NewConn (the handshakes of Client and Server derive a fresh key per
// connection and do not use it).
//
// The bound is on memory, not on what is caught: the usual misuse, one
// static key for every connection (or one slice handed to NewConn twice),
// collides on the second connection, whatever the bound; what escapes is a
// key reused only after 1024 other keys were given to NewConn in between.
const keyHistory = 1024

// fingerprint identifies a (protocol, side, key) triple without revealing
// the key: the first 16 bytes of HMAC-SHA256 under a key drawn at random
// once per process, so the history holds nothing that can be tested
// against a guessed key outside the process.
type fingerprint [16]byte

// usedKeys remembers the fingerprints of the last keyHistory keys given to
// NewConn.
var usedKeys keyGuard

type keyGuard struct {
	mu   sync.Mutex
	mac  [32]byte
	seen []fingerprint // ring; nil until the first use
	next int
}

// claim records that key is used by side with protocol, and reports false
// if it was already recorded.
func (g *keyGuard) claim(protocol string, side Side, key []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen == nil {
		rand.Read(g.mac[:]) // never fails (Go 1.24+)
		g.seen = make([]fingerprint, 0, keyHistory)
	}
	m := hmac.New(sha256.New, g.mac[:])
	m.Write([]byte(protocol))
	m.Write([]byte{0, byte(side)})
	m.Write(key)
	var sum [sha256.Size]byte
	var fp fingerprint
	copy(fp[:], m.Sum(sum[:0]))
	for i := range g.seen {
		if g.seen[i] == fp {
			return false
		}
	}
	if len(g.seen) < keyHistory {
		g.seen = append(g.seen, fp)
	} else {
		g.seen[g.next] = fp
		g.next = (g.next + 1) % keyHistory
	}
	return true
}

// allZero reports whether key is all zero bytes, in constant time.
func allZero(key []byte) bool {
	var acc byte
	for _, b := range key {
		acc |= b
	}
	return subtle.ConstantTimeByteEq(acc, 0) == 1
}
