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
// A key is for one connection only: NewConn clears the caller's copy and
// refuses a key it was given before for the same side (see [NewConn]).
//
// A Conn reads through [readyreader.New]: while no bytes are buffered it
// waits for readability without owning a buffer, takes one from its
// [bufferpool.Pool] when bytes arrive, decrypts frames in place (or straight
// into the caller's slice, or a buffer from the caller's pool of just the
// frame's size, when a whole frame fits) and gives the buffer back, cleared
// where plaintext was, as soon as the plaintext has been read. A frame that
// arrives slowly pins about what has arrived, not the length its header
// announces. Because a Conn is itself a [readyreader.Reader] (see
// [Conn.ReadOnReady]), a layer on top of it, such as an HTTP/2 framer, can
// stay non-pinning too. Where readyreader has to fall back to blocking reads
// (Windows, or a net.Conn that is not a bare socket), a read must own its
// buffer while it waits; an idle Conn then pins a 20 KiB buffer, about one
// frame, instead of taking 64 KiB at a time as it does once bytes are there
// on the non-pinning path. The read path a reader parks in is kept shallow,
// so that its goroutine keeps the smallest (2 KiB) stack while idle.
//
// Besides that, an idle Conn keeps little: its own struct, the TLS handshake
// result of [Client] and [Server], and its record key (the 16-byte AES key,
// or for AES128GCMRekey the 32-byte key-derivation key and the nonce mask,
// not an HMAC instance). Each direction has an AES-GCM instance of its own
// while it is in use (about 0.8 KiB: crypto/cipher documents no concurrent
// use of one AEAD, so the reading and the writing goroutine never share
// one), and holds it only weakly while idle (the reader waiting with
// nothing buffered, or between Writes): if a garbage collection frees it,
// the next frame rebuilds it from the key, for AES128GCMRekey that of the
// frame's key epoch; if not, the same one is taken back. AES128GCMRekey also
// builds an HMAC and a new AES-GCM instance when a direction enters a new
// key epoch, once every 2^16 frames. Rebuilding runs on a goroutine of its
// own (so the reader's stack does not grow) and never changes a frame
// counter; it and the key epochs make the only allocations the record layer
// makes itself after NewConn (buffers come from the pool).
//
// Errors: a frame that fails authentication or is malformed ends the read
// side for good with an error wrapping [ErrAuth] or [ErrMalformed]; no byte
// of such a frame is returned. A stream that ends inside a frame reports an
// error wrapping [io.ErrUnexpectedEOF]; one that ends at a frame boundary
// reports [io.EOF]. Errors of the underlying connection are passed through
// as they are (a deadline: its timeout error, wrapping
// [os.ErrDeadlineExceeded] for the net package's connections; Close:
// [net.ErrClosed]). As in crypto/tls, every read error but a timeout is
// sticky. Timeouts break nothing, for reads or writes: a Write that times
// out undoes the frames of which no byte was sent and finishes a frame it
// cut before anything else, so the Conn passes
// golang.org/x/net/nettest.TestConn. Close does not wait for a Read or
// Write in progress.
//
// # Security
//
// Client and Server authenticate a connection with an ordinary TLS 1.3
// handshake run by crypto/tls, so everything tls.Config offers applies:
// server certificates checked against RootCAs and ServerName, mutual TLS with
// ClientAuth and ClientCAs, VerifyPeerCertificate and VerifyConnection hooks.
// Versions below TLS 1.3 are refused, and both sides insist on the ALPN
// protocol [ALPN], so a peer that speaks plain TLS (or TLS for another
// protocol) fails the handshake instead of exchanging data it cannot read.
// When the handshake completes, both sides hold the same TLS 1.3 exporter
// secret, which is bound to the full handshake transcript (both key shares,
// the certificates and the Finished messages). The 44-byte record key is
// ExportKeyingMaterial(ExporterLabel, "ALTSRP_GCM_AES128_REKEY", 44) (RFC
// 8446 section 7.5), so it is known only to the two endpoints, fresh for
// every connection (ephemeral (EC)DHE), and never used by TLS itself. The
// rest of the connection runs the ALTS record protocol ALTSRP_GCM_AES128_REKEY
// with that key: every frame is sealed with AES-128-GCM under a key derived
// from the record key and the frame counter, and the nonce is the 96-bit
// frame counter with a direction bit that is set only for frames sent by the
// server. Both directions use the same record key, as in Google's ALTS; the
// direction bit makes the (key, nonce) pairs of the two directions disjoint,
// the counter makes them unique within a direction, and the record layer
// refuses to send or accept a frame once the counter would wrap, so a nonce
// is never used twice with one key. An active attacker on the path can
// delay, drop or cut the byte stream, and the receiver notices any change to
// a frame's ciphertext, tag or length, its order, or a replayed or reflected
// frame (the counter or the direction bit would not match, and the GCM tag
// fails; the failure is sticky). The 8-byte frame header is not
// authenticated: only the low byte of its type field is checked, as in
// grpc-go, so the other three bytes can be changed unnoticed, to no effect. What the attacker can do is stop the stream at a frame boundary:
// ALTS has no close_notify, so a clean-looking EOF after a whole frame is
// indistinguishable from the peer closing the connection, and protocols that
// need to know that a message is complete must frame it themselves (HTTP/2
// and gRPC do). Lengths, timing and the number of frames are visible to an
// observer. Client certificate failures in TLS 1.3 are reported by the
// server after the client's handshake has already returned: the client then
// sees its first read fail rather than Client. The record key can be
// recomputed by anyone holding the connection's tls.ConnectionState
// ([Conn.ConnectionState], and for gRPC every handler, through the peer's
// AuthInfo): its ExportKeyingMaterial with ExporterLabel returns it, so such
// code can decrypt the connection's traffic and must be trusted like the
// connection itself.
package alts
