// Package alts implements the ALTS record protocol as a [net.Conn] that
// holds no memory while it is idle.
//
// ALTS (Google's Application Layer Transport Security, the transport
// security of gRPC's "alts" credentials) protects a byte stream by cutting it
// into frames
//
//	[length u32 LE][type u32 LE = 6][AES-128-GCM ciphertext][16-byte tag]
//
// each sealed under a nonce built from a 96-bit frame counter that both ends
// count and never send. Two record protocols exist: [AES128GCM] seals every
// frame with one 16-byte key, and [AES128GCMRekey] derives a fresh frame key
// from a 44-byte key every 2^16 frames. A [Conn] made by [NewConn] is
// byte-for-byte compatible with the record layers of grpc-go and gRPC C-core:
// given the same key it writes exactly the frames they write and reads theirs.
//
// NewConn only runs the record layer; the key comes from a handshake (ALTS's
// own handshaker service, or the TLS 1.3 handshake of [Client] and [Server]).
//
// A Conn reads through [readyreader.New]: while no bytes are buffered it
// waits for readability without owning a buffer, takes one from its
// [bufferpool.Pool] when bytes arrive, decrypts frames in place (or straight
// into the caller's slice when it is large enough) and gives the buffer back
// as soon as the plaintext has been read. A frame that arrives slowly pins
// about what has arrived, not the length its header announces. Because a
// Conn is itself a [readyreader.Reader] (see [Conn.ReadOnReady]), a layer on
// top of it, such as an HTTP/2 framer, can stay non-pinning too.
//
// Errors: a frame that fails authentication or is malformed ends the read
// side for good with an error wrapping [ErrAuth] or [ErrMalformed]; no byte
// of such a frame is returned. A stream that ends inside a frame reports an
// error wrapping [io.ErrUnexpectedEOF]; one that ends at a frame boundary
// reports [io.EOF]. Errors of the underlying connection (deadlines:
// [os.ErrDeadlineExceeded]; Close: [net.ErrClosed]) are passed through.
package alts
