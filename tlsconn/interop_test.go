package tlsconn

import (
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCryptoTLSInterop exchanges data of many sizes in both directions
// between tlsconn and crypto/tls in every role, TLS 1.2 and 1.3, with
// session tickets on and off.
func TestCryptoTLSInterop(t *testing.T) {
	sizes := []int{1, 100, 16383, 16384, 16385, 100000, 1 << 20}
	for _, roles := range [][2]peer{{ours, stdlib}, {stdlib, ours}, {ours, ours}} {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			for _, tickets := range []bool{true, false} {
				name := fmt.Sprintf("client=%v/server=%v/%s/tickets=%v", roles[0], roles[1], tls.VersionName(version), tickets)
				t.Run(name, func(t *testing.T) {
					scfg := serverConfig(t)
					scfg.MaxVersion = version
					scfg.SessionTicketsDisabled = !tickets
					pool := debugPool()
					c, s := pairOf(t, roles[0], roles[1], clientConfig(t), scfg, WithPool(pool))
					require.Equal(t, version, c.ConnectionState().Version)
					for _, end := range []conn{c, s} {
						if tc, ok := end.(*Conn); ok {
							require.False(t, tc.Pinning(), "pinning: %v", tc.PinningReason())
						}
					}
					for _, n := range sizes {
						data := randBytes(n)
						transfer(t, c, s, data, 64<<10)
						transfer(t, s, c, data, 64<<10)
					}
					c.Close()
					s.Close()
					assert.Zero(t, pool.Stats().InUseBytes)
				})
			}
		}
	}
}
