package tlsconn

import (
	"crypto/tls"
	"io"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/israce"
)

// TestAllocs checks that a steady-state Write and Read (small messages and
// records of 16 KiB, decrypted in place and straight into the caller's
// slice) and ReadOnReady allocate nothing.
func TestAllocs(t *testing.T) {
	if israce.Enabled {
		t.Skip("the race detector makes sync.Pool drop buffers; .ci/run runs allocation tests without -race")
	}
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for _, size := range []int{10, 1000, 16384, 40000} {
			t.Run(tls.VersionName(version)+"/"+itoa(size), func(t *testing.T) {
				c, s := stackPair(t, version)
				msg := make([]byte, size)
				small := make([]byte, 100) // smaller than a record: decrypted in place
				big := make([]byte, size+1000)
				pool := bufferpool.NewTiered()
				run := func(name string, read func()) {
					allocs := testing.AllocsPerRun(100, func() {
						if _, err := s.Write(msg); err != nil {
							panic(err)
						}
						read()
					})
					require.Zero(t, allocs, "%s: allocations per message", name)
				}
				run("Read into a small slice", func() {
					for got := 0; got < size; {
						n, err := c.Read(small)
						if err != nil {
							panic(err)
						}
						got += n
					}
				})
				run("Read into a large slice", func() {
					if _, err := io.ReadFull(c, big[:size]); err != nil {
						panic(err)
					}
				})
				run("ReadOnReady", func() {
					for got := 0; got < size; {
						buf, n, err := c.ReadOnReady(32<<10, pool)
						if err != nil {
							panic(err)
						}
						pool.Put(buf)
						got += n
					}
				})
			})
		}
	}
}

// itoa names a size in subtest names: 100, 16KiB, 1024KiB.
func itoa(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return strconv.Itoa(n/1024) + "KiB"
	}
	return strconv.Itoa(n)
}
