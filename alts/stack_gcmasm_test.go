//go:build amd64 || arm64 || ppc64 || ppc64le || s390x

package alts

// parkHeadroom is the stack, in bytes, a goroutine may have used before it
// calls Read or ReadOnReady and still wake, decrypt and park on its initial
// 2 KiB stack. It holds where crypto/aes has an AES-GCM assembly
// implementation.
const parkHeadroom = 150
