// The 150-byte promise holds where AES-GCM has assembly (crypto/aes on
// amd64 and arm64). The generic Go AES-GCM of other architectures (386,
// for one) needs more stack than a 2 KiB goroutine has left after a parked
// read's frames: there a reader that decrypts keeps a 4 KiB stack, as a
// crypto/tls reader does.

//go:build amd64 || arm64

package tlsconn

import (
	"crypto/tls"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/stacktest"
)

// grew runs read twice on a goroutine whose stack has burn bytes used
// (stacktest.Grew): the first read takes a message that is already on its
// way, the second parks until the server sends another once the reader is
// parked. That is what a reader does as its connection goes from busy to
// idle and back: wake, decrypt, deliver, park.
func grew(t *testing.T, version uint16, burn int, read func(c *Conn)) bool {
	c, s := stackPair(t, version)
	send := func() error {
		_, err := s.Write(make([]byte, msgLen))
		return err
	}
	return stacktest.GrewAcrossIdle(t, burn, "tlsconn.(*Conn).Read", send, nil, func() { read(c) })
}

// TestParkedStack proves that a reader's stack stays at 2 KiB through
// waking, decrypting, delivering and parking again, with at least 150 B of
// headroom: a goroutine that grew past 2 KiB keeps 4 KiB while parked.
func TestParkedStack(t *testing.T) {
	if !stacktest.InChild(t) {
		return
	}
	const headroom = 150
	// One P: the pools' per-P caches then hand each read the buffer the
	// last one gave back, as a busy connection's reader gets it, instead of
	// allocating at random (the allocator, refilling its caches, goes
	// deeper than anything here).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	pool := bufferpool.NewTiered()
	var p [64]byte
	reads := []struct {
		name string
		read func(c *Conn)
	}{
		{"Read", func(c *Conn) {
			if n, err := c.Read(p[:]); n != msgLen || err != nil {
				panic(fmt.Sprint(n, err))
			}
		}},
		{"ReadOnReady", func(c *Conn) {
			buf, n, err := c.ReadOnReady(32<<10, pool)
			if n != msgLen || err != nil {
				panic(fmt.Sprint(n, err))
			}
			pool.Put(buf)
		}},
	}
	for _, r := range reads {
		for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			t.Run(r.name+"/"+tls.VersionName(version), func(t *testing.T) {
				// The check can fail: far more than 2 KiB of burn grows.
				require.True(t, grew(t, version, 2048, r.read))
				assert.False(t, grew(t, version, headroom, r.read),
					"a tlsconn reader grows its stack past 2 KiB with %d B used before it", headroom)
				if os.Getenv("STACK_CALIBRATE") != "" {
					t.Logf("%s %s: %d B of headroom", r.name, tls.VersionName(version),
						stacktest.Headroom(func(burn int) bool { return grew(t, version, burn, r.read) }))
				}
			})
		}
	}
}
