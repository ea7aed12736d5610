//go:build !(amd64 || arm64 || ppc64 || ppc64le || s390x)

package alts

// parkHeadroom is the stack, in bytes, a goroutine may have used before it
// calls Read or ReadOnReady and still wake, decrypt and park on its initial
// 2 KiB stack. Without AES-GCM assembly (386, 32-bit arm, ...) crypto/aes's
// generic Open alone leaves about 176 B of a 2 KiB stack (measured on 386:
// a bare aead.Open grows the stack with 176 B burnt; alts and tlsconn
// readers grow at 96 B), so the promise is smaller here.
const parkHeadroom = 64
