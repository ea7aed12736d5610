package tlsconn

import (
	"crypto/tls"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/chacha20poly1305"
)

// TestSuites runs the cipher suites a crypto/tls peer can be made to negotiate with
// tlsconn at both roles: the AEAD suites go through tlsconn's record layer,
// the others (and ChaCha20-Poly1305 without an implementation) through
// crypto/tls's, reported by Pinning.
func TestSuites(t *testing.T) {
	rsaCert, err := testPKI(t).ServerRSA()
	require.NoError(t, err)
	type tc struct {
		name    string
		version uint16
		suite   uint16
		rsa     bool
		chacha  bool // give tlsconn x/crypto's ChaCha20-Poly1305
		pinning bool
	}
	cases := []tc{
		{"TLS13_AES_128_GCM", tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, false, false, false},
		{"ECDHE_ECDSA_AES_128_GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false, false, false},
		{"ECDHE_ECDSA_AES_256_GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, false, false, false},
		{"ECDHE_RSA_AES_128_GCM", tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, true, false, false},
		{"ECDHE_RSA_AES_256_GCM", tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, true, false, false},
		{"RSA_AES_128_GCM", tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, true, false, false},
		{"RSA_AES_256_GCM", tls.VersionTLS12, tls.TLS_RSA_WITH_AES_256_GCM_SHA384, true, false, false},
		{"ECDHE_ECDSA_CHACHA20/x-crypto", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, false, true, false},
		{"ECDHE_RSA_CHACHA20/x-crypto", tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, true, true, false},
		{"ECDHE_ECDSA_CHACHA20/none", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, false, false, true},
		{"ECDHE_ECDSA_AES_128_CBC_SHA", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, false, false, true},
		{"ECDHE_RSA_AES_256_CBC_SHA", tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, true, false, true},
	}
	for _, c := range cases {
		for _, roles := range [][2]peer{{ours, stdlib}, {stdlib, ours}, {ours, ours}} {
			t.Run(c.name+"/client="+roles[0].String()+"/server="+roles[1].String(), func(t *testing.T) {
				scfg := serverConfig(t)
				if c.rsa {
					scfg.Certificates = []tls.Certificate{rsaCert}
				}
				ccfg := clientConfig(t)
				ccfg.MaxVersion = c.version
				// crypto/tls lets no config choose a TLS 1.3 suite (it
				// picks AES-128-GCM on AES hardware); the OpenSSL tests
				// cover the others.
				ccfg.CipherSuites = []uint16{c.suite}
				scfg.CipherSuites = []uint16{c.suite} // RSA key exchange is off by default
				var opts []Option
				if c.chacha {
					opts = append(opts, WithChaCha20Poly1305(chacha20poly1305.New))
				}
				pool := debugPool()
				opts = append(opts, WithPool(pool))
				cn, sn := pairOf(t, roles[0], roles[1], ccfg, scfg, opts...)
				require.Equal(t, c.suite, cn.ConnectionState().CipherSuite, "negotiated %s", tls.CipherSuiteName(cn.ConnectionState().CipherSuite))
				for _, end := range []conn{cn, sn} {
					if tc, ok := end.(*Conn); ok {
						assert.Equal(t, c.pinning, tc.Pinning(), "reason: %v", tc.PinningReason())
						if c.pinning {
							assert.True(t, errors.Is(tc.PinningReason(), errHandoff))
						}
					}
				}
				for _, n := range []int{1, 5000, 70000} {
					data := randBytes(n)
					transfer(t, cn, sn, data, 16<<10)
					transfer(t, sn, cn, data, 16<<10)
				}
				cn.Close()
				sn.Close()
				assert.Zero(t, pool.Stats().InUseBytes)
			})
		}
	}
}
