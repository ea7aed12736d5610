// Package tlsconn is standard TLS (1.3, and 1.2 with AEAD suites) whose idle
// connections hold no buffer, wire-compatible with every TLS peer. Its API
// mirrors crypto/tls: switching is a rename (tls.Client → tlsconn.Client,
// tls.Listen → tlsconn.Listen, ...), with the same *tls.Config.
//
// An idle *tls.Conn keeps its record buffer for as long as the peer is
// silent (3 KiB per side after a 100-byte message, 24 KiB after a 64 KiB
// one; it never shrinks), and every reader above it (bufio, an HTTP/2
// framer) keeps its own, because a *tls.Conn cannot wait without a buffer. A
// [Conn] lets crypto/tls run the handshake, with all its checks, and then
// carries the data with its own record layer, which waits for readability
// without a buffer (package readyreader), takes a pool buffer sized to what
// arrived, decrypts in place or straight into the caller's slice, and gives
// the buffer back, cleared, as soon as the data is read. A Conn is also a
// [readyreader.Reader] (ReadOnReady), so a layer on top of it can stay
// non-pinning too; grpc-go uses that method (see readygrpc.NewTLS).
//
// # What it relies on in crypto/tls
//
// The handshake is crypto/tls's, unchanged; three facts let the record layer
// take over afterwards:
//
//   - Secrets: tls.Config.KeyLogWriter receives the TLS 1.3 application
//     traffic secrets (CLIENT_TRAFFIC_SECRET_0, SERVER_TRAFFIC_SECRET_0) and
//     the TLS 1.2 master secret (CLIENT_RANDOM). Each connection's handshake
//     runs with a config whose KeyLogWriter leads to that connection alone
//     (and on to the KeyLogWriter the caller set, if any); the secrets go
//     nowhere else and are wiped once the keys are derived. A resumed TLS
//     1.2 session logs no secret: its master secret is read from the
//     tls.SessionState that crypto/tls resumes (seen through
//     Config.UnwrapSession on the server and the ClientSessionCache on the
//     client). On the server
//     the per-connection config comes from GetConfigForClient of one base
//     config shared by every connection with the same caller config, so
//     that automatic session ticket keys stay shared and resumption works
//     (a Go or OpenSSL client resumes against a tlsconn server).
//   - Nothing read ahead: crypto/tls reads the connection through a wrapper
//     whose Read never returns a byte past the end of the current record, so
//     when the handshake ends nothing the peer sent afterwards is buffered
//     inside crypto/tls.
//   - Sequence numbers are found out, not assumed: the wrapper keeps copies
//     of the records crypto/tls wrote and read, and the record layer
//     trial-decrypts them. A Go TLS 1.3 server seals its NewSessionTickets
//     under the application key inside the handshake, so its first record
//     of data has sequence number 1, or 0 without tickets; TLS 1.2 counts
//     the records after each ChangeCipherSpec. If crypto/tls read anything
//     under the application key, or any record cannot be accounted for,
//     the handoff is refused.
//
// # Fails closed
//
// Where the handoff is impossible — a suite this package does not carry
// (CBC), ChaCha20-Poly1305 without [WithChaCha20Poly1305] (the standard
// library exports no ChaCha20-Poly1305 and this module depends on
// golang.org/x/sys alone), AES-GCM refused by the runtime (GODEBUG
// fips140=only forbids caller-chosen nonces), a client config that allows
// renegotiation, or records it cannot account for — crypto/tls keeps
// carrying the data through the *tls.Conn, correctly but with its buffer,
// and [Conn.Pinning] reports it. Data is never guessed at: every other
// failure is an error.
//
// After the handoff, the record layer handles application data, empty
// records, record padding and the TLS 1.3 inner content type,
// NewSessionTicket (skipped, or given to crypto/tls for a client with a
// ClientSessionCache, so that it can resume), KeyUpdate in both directions
// (an update_requested is answered before the next record of data; the
// write key is also replaced after 2^22 records, far below the AES-GCM
// limit), close_notify (io.EOF; Close sends one), other alerts (fatal,
// returned as *net.OpError wrapping a tls.AlertError, as crypto/tls does),
// and refuses renegotiation, a change_cipher_spec after the handshake (RFC
// 8446 section 5; crypto/tls drops it), a KeyUpdate that does not end its
// record, records longer than the protocol allows (before anything is
// allocated for them) and plaintexts over 2^14 bytes. A record that fails
// authentication ends the connection with bad_record_mac: no byte of it is
// returned, the error is sticky, and the alert is sent. Sequence numbers
// never wrap.
//
// # Differences from crypto/tls
//
// A Write that times out does not break the connection: records of which
// no byte reached the socket are undone, and a record cut midway is
// completed first by the next Write. A Conn passes
// golang.org/x/net/nettest.TestConn in full, which a *tls.Conn does not.
//
// The handshake runs on a goroutine of its own (it needs 8–16 KiB of stack,
// which a reader that parks afterwards would otherwise keep), so
// ClientHelloInfo.Conn in a GetConfigForClient or GetCertificate callback is
// a wrapper of the net.Conn, not the net.Conn itself, and the server config
// the caller passes is cloned once (the first time it is used) rather than
// used directly: set session ticket keys on it before its first use.
package tlsconn
