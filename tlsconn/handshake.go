package tlsconn

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"weak"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/record"
)

// hsConn is the connection as crypto/tls sees it: one record at a time, with
// copies of the records kept (see record.HandshakeConn), and the key log
// sink of the connection.
type hsConn struct {
	*record.HandshakeConn
	keys keyLog
	why  error // the reason the handoff was refused, when pinning
}

// keyLog receives crypto/tls's key log lines (the NSS key log format) for
// one connection and keeps the secrets the record layer needs: the TLS 1.3
// application traffic secrets, or the TLS 1.2 master secret. Every line is
// passed on to the KeyLogWriter the caller configured, if any; no secret
// goes anywhere else.
type keyLog struct {
	user io.Writer

	clientTraffic, serverTraffic []byte // TLS 1.3 *_TRAFFIC_SECRET_0
	master                       []byte // TLS 1.2 CLIENT_RANDOM
	// resumed is the master secret of the TLS 1.2 session a resumed
	// handshake continues, which crypto/tls does not log: taken from the
	// SessionState that the client's session cache or the server's ticket
	// decryption hands crypto/tls.
	resumed []byte
}

// session keeps the secret of a session crypto/tls is about to resume.
// SessionState.Bytes is opaque by its documentation; the secret is read
// from its current layout (version, type, suite, creation time, then the
// length-prefixed secret), and a wrong reading cannot corrupt data: the
// Finished records must then open under the keys derived from it, or the
// handoff is refused.
func (k *keyLog) session(s *tls.SessionState) {
	if s == nil {
		return
	}
	b, err := s.Bytes()
	if err != nil {
		return
	}
	defer clear(b)
	const fixed = 2 + 1 + 2 + 8
	if len(b) < fixed+1 || (b[2] != 1 && b[2] != 2) {
		return
	}
	n := int(b[fixed])
	if n == 0 || n > maxSecretLen || len(b) < fixed+1+n {
		return
	}
	clear(k.resumed)
	k.resumed = bytes.Clone(b[fixed+1 : fixed+1+n])
}

// sessionCache wraps a client's ClientSessionCache to see the session a
// handshake offers.
type sessionCache struct {
	tls.ClientSessionCache
	keys *keyLog
}

func (c *sessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	cs, ok := c.ClientSessionCache.Get(key)
	if ok && cs != nil {
		if _, state, err := cs.ResumptionState(); err == nil {
			c.keys.session(state)
		}
	}
	return cs, ok
}

// Write parses one key log line: "LABEL <client random> <secret>\n".
func (k *keyLog) Write(line []byte) (int, error) {
	f := bytes.Fields(line)
	if len(f) == 3 {
		var dst *[]byte
		switch string(f[0]) {
		case "CLIENT_TRAFFIC_SECRET_0":
			dst = &k.clientTraffic
		case "SERVER_TRAFFIC_SECRET_0":
			dst = &k.serverTraffic
		case "CLIENT_RANDOM":
			dst = &k.master
		}
		if dst != nil {
			secret := make([]byte, hex.DecodedLen(len(f[2])))
			if _, err := hex.Decode(secret, f[2]); err == nil {
				clear(*dst)
				*dst = secret
			}
		}
	}
	if k.user != nil {
		return k.user.Write(line)
	}
	return len(line), nil
}

// wipe forgets the secrets.
func (k *keyLog) wipe() {
	clear(k.clientTraffic)
	clear(k.serverTraffic)
	clear(k.master)
	clear(k.resumed)
	k.clientTraffic, k.serverTraffic, k.master, k.resumed = nil, nil, nil, nil
}

// ---------------------------------------------------------------- server configs

// The server side needs a config per connection, whose KeyLogWriter leads
// to that connection. Cloning the caller's config per connection would give
// each connection its own automatic session ticket keys and break
// resumption; so every caller's config gets one shared base (a clone, made
// once and kept while the caller's config lives) whose GetConfigForClient
// returns the per-connection config. crypto/tls then takes ticket keys from
// the base (tls.Config.ticketKeys falls back to the original config when the
// one returned has none set explicitly), so tickets issued by one tlsconn
// connection resume on every other one that uses the same config.
var bases struct {
	mu sync.Mutex
	m  map[weak.Pointer[tls.Config]]*tls.Config
}

// emptyConfig stands for a nil server config: crypto/tls then fails the
// handshake as it would for tls.Server(conn, nil).
var emptyConfig = &tls.Config{}

// serverBase returns the shared base config of config.
func serverBase(config *tls.Config) *tls.Config {
	if config == nil {
		config = emptyConfig
	}
	k := weak.Make(config)
	bases.mu.Lock()
	defer bases.mu.Unlock()
	if b, ok := bases.m[k]; ok {
		return b
	}
	if bases.m == nil {
		bases.m = make(map[weak.Pointer[tls.Config]]*tls.Config)
	}
	b := newServerBase(config)
	bases.m[k] = b
	runtime.AddCleanup(config, func(k weak.Pointer[tls.Config]) {
		bases.mu.Lock()
		delete(bases.m, k)
		bases.mu.Unlock()
	}, k)
	return b
}

// newServerBase clones config and installs the GetConfigForClient that
// binds each connection's key log. The base must not refer to config, or
// the cache would keep config alive.
func newServerBase(config *tls.Config) *tls.Config {
	b := config.Clone()
	userGet := config.GetConfigForClient
	b.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		hc, ok := hello.Conn.(*hsConn)
		if !ok {
			return nil, errors.New("tlsconn: internal error: handshake not run by tlsconn")
		}
		var cfg *tls.Config
		if userGet != nil {
			uc, err := userGet(hello)
			if err != nil {
				return nil, err
			}
			if uc != nil {
				cfg = uc.Clone()
			}
		}
		if cfg == nil {
			cfg = b.Clone()
		}
		cfg.GetConfigForClient = nil
		hc.keys.user = cfg.KeyLogWriter
		cfg.KeyLogWriter = &hc.keys
		// See the session a resumption continues (TLS 1.2 logs no
		// secret for it). Tickets are decrypted as crypto/tls would:
		// with the keys set on the returned config, or else with the
		// shared base's.
		userUnwrap, perConn := cfg.UnwrapSession, cfg
		cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			var s *tls.SessionState
			var err error
			if userUnwrap != nil {
				s, err = userUnwrap(identity, cs)
			} else if s, err = perConn.DecryptTicket(identity, cs); s == nil && err == nil {
				s, err = b.DecryptTicket(identity, cs)
			}
			hc.keys.session(s)
			return s, err
		}
		return cfg, nil
	}
	return b
}

// ---------------------------------------------------------------- handoff

// errHandoff wraps every reason the record layer cannot take over.
var errHandoff = errors.New("tlsconn: crypto/tls keeps carrying the data")

func handoffErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errHandoff}, args...)...)
}

// handoff sets up the record layer from what crypto/tls negotiated and the
// records it exchanged, or says why it cannot (the Conn then keeps using
// crypto/tls). It never guesses: sequence numbers come from trial-decrypting
// the records crypto/tls wrote and read, and any record unaccounted for
// refuses the handoff.
func (c *Conn) handoff(state *tls.ConnectionState, hc *hsConn) error {
	s := suiteByID(state.CipherSuite, state.Version)
	if s == nil {
		return handoffErr("cipher suite %s is not an AEAD suite this package carries", tls.CipherSuiteName(state.CipherSuite))
	}
	if hc.Overflow() {
		return handoffErr("handshake larger than the record log")
	}
	if !hc.Between() {
		return handoffErr("handshake ended inside a record")
	}
	if state.Version == tls.VersionTLS13 {
		if err := c.handoff13(s, hc); err != nil {
			return err
		}
	} else {
		if err := c.handoff12(s, state, hc); err != nil {
			return err
		}
	}
	c.rd.Init(c.conn, c.pool, formatFor(s))
	if c.isClient && s.tls13 && c.config.ClientSessionCache != nil {
		c.tickets = true
	}
	hc.StopCapture()
	return nil
}

func (c *Conn) handoff13(s *suite, hc *hsConn) error {
	k := &hc.keys
	if len(k.clientTraffic) == 0 || len(k.serverTraffic) == 0 {
		return handoffErr("no TLS 1.3 traffic secrets in the key log")
	}
	outSecret, inSecret := k.serverTraffic, k.clientTraffic
	if c.isClient {
		outSecret, inSecret = inSecret, outSecret
	}
	if err := c.out.setTrafficSecret(s, outSecret, c.chacha); err != nil {
		return handoffErr("%v", err)
	}
	if err := c.in.setTrafficSecret(s, inSecret, c.chacha); err != nil {
		return handoffErr("%v", err)
	}
	// Records crypto/tls sealed under the application key (a server's
	// NewSessionTickets) advance the write sequence number.
	seq, err := trailingRun(&c.out, hc.WrittenRecords(), 0)
	if err != nil {
		return err
	}
	c.out.seq = seq
	// crypto/tls must not have read anything sealed under the peer's
	// application key: that would be data or a message it consumed.
	for _, rec := range hc.ReadRecords() {
		if rec[0] == typeApplicationData && opens(&c.in, rec, 0) {
			return handoffErr("crypto/tls read a record sealed under the application key")
		}
	}
	return nil
}

func (c *Conn) handoff12(s *suite, state *tls.ConnectionState, hc *hsConn) error {
	if c.isClient && c.config.Renegotiation != tls.RenegotiateNever {
		return handoffErr("the client config allows renegotiation")
	}
	k := &hc.keys
	master := k.master
	if len(master) == 0 && state.DidResume {
		master = k.resumed
	}
	if len(master) == 0 {
		return handoffErr("no TLS 1.2 master secret in the key log")
	}
	serverRecords, clientRecords, outRecords, inRecords := hc.ReadRecords(), hc.WrittenRecords(), hc.WrittenRecords(), hc.ReadRecords()
	if !c.isClient {
		serverRecords, clientRecords = clientRecords, serverRecords
	}
	serverRandom := helloRandom(serverRecords, handshakeServerHello)
	clientRandom := helloRandom(clientRecords, handshakeClientHello)
	if serverRandom == nil || clientRandom == nil {
		return handoffErr("no ClientHello or ServerHello in the handshake records")
	}
	ck, sk, civ, siv := keyBlock12(s, master, clientRandom, serverRandom)
	defer clear(ck)
	defer clear(sk)
	outKey, outIV, inKey, inIV := sk, siv, ck, civ
	if c.isClient {
		outKey, outIV, inKey, inIV = ck, civ, sk, siv
	}
	if err := c.out.set12(s, outKey, outIV, 0, c.chacha); err != nil {
		return handoffErr("%v", err)
	}
	if err := c.in.set12(s, inKey, inIV, 0, c.chacha); err != nil {
		return handoffErr("%v", err)
	}
	// The records after each side's ChangeCipherSpec (its Finished) are
	// sealed under the keys: count them, checking each.
	outSeq, err := afterCCS(&c.out, outRecords)
	if err != nil {
		return err
	}
	inSeq, err := afterCCS(&c.in, inRecords)
	if err != nil {
		return err
	}
	c.out.seq, c.in.seq = outSeq, inSeq
	return nil
}

// opens reports whether rec opens under h with sequence number seq. It
// opens a copy, so rec is unchanged.
func opens(h *halfConn, rec []byte, seq uint64) bool {
	if h.innerLen(rec) < 0 {
		return false
	}
	buf := bufferpool.Default().Get(len(rec))
	cp := (*buf)[:copy(*buf, rec)]
	_, _, ok := h.open(cp[h.payloadOffset():][:0], cp, seq)
	clear(cp)
	bufferpool.Default().Put(buf)
	return ok
}

// trailingRun finds the records at the end of recs sealed under h with
// sequence numbers first, first+1, ..., and returns the sequence number
// after them. A record under h followed by one that is not means the
// records cannot be accounted for.
func trailingRun(h *halfConn, recs [][]byte, first uint64) (uint64, error) {
	seq := first
	started := false
	for _, rec := range recs {
		if rec[0] != typeApplicationData {
			if started {
				return 0, handoffErr("record of type %d after records under the application key", rec[0])
			}
			continue
		}
		if opens(h, rec, seq) {
			started = true
			seq++
			continue
		}
		if started {
			return 0, handoffErr("record %d under the application key does not open", seq)
		}
	}
	return seq, nil
}

// afterCCS checks that the records after the last ChangeCipherSpec of recs
// open under h in sequence from 0 and returns their count.
func afterCCS(h *halfConn, recs [][]byte) (uint64, error) {
	last := -1
	for i, rec := range recs {
		if rec[0] == typeChangeCipherSpec {
			last = i
		}
	}
	if last < 0 {
		return 0, handoffErr("no ChangeCipherSpec in the handshake records")
	}
	var seq uint64
	for _, rec := range recs[last+1:] {
		if !opens(h, rec, seq) {
			return 0, handoffErr("record %d after ChangeCipherSpec does not open", seq)
		}
		seq++
	}
	if seq == 0 {
		return 0, handoffErr("no Finished after ChangeCipherSpec")
	}
	return seq, nil
}

// helloRandom returns the random of the last hello message of type typ
// (ClientHello or ServerHello) in the handshake records one side sent
// before its ChangeCipherSpec, or nil.
func helloRandom(recs [][]byte, typ byte) []byte {
	var hs []byte
	var random []byte
	for _, rec := range recs {
		if rec[0] == typeChangeCipherSpec {
			break
		}
		if rec[0] != typeHandshake {
			continue
		}
		hs = append(hs, rec[headerLen:]...)
		// Handshake messages: type(1) length(3) body; a hello's body
		// starts with version(2) random(32).
		for len(hs) >= 4 {
			n := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
			if len(hs) < 4+n {
				break
			}
			if hs[0] == typ && n >= 2+32 {
				random = bytes.Clone(hs[4+2 : 4+2+32])
			}
			hs = hs[4+n:]
		}
	}
	return random
}

// formatFor returns the record format of suite s after the handshake.
func formatFor(s *suite) *record.Format {
	if s.tls13 {
		return &format13
	}
	return &format12
}

var errTruncated = fmt.Errorf("tlsconn: connection ended inside a record: %w", io.ErrUnexpectedEOF)

var (
	format13 = record.Format{HeaderLen: headerLen, Length: func(h []byte) (int, error) { return recordLength(h, maxCipher13) }, Truncated: errTruncated}
	format12 = record.Format{HeaderLen: headerLen, Length: func(h []byte) (int, error) { return recordLength(h, maxCipher12) }, Truncated: errTruncated}
)

// recordLength checks a record header and returns the record's total
// length, refusing a body longer than max before anything is allocated for
// it.
func recordLength(h []byte, max int) (int, error) {
	if typ := h[0]; typ < typeChangeCipherSpec || typ > typeApplicationData {
		return 0, alertErr(alertUnexpectedMessage, fmt.Sprintf("tlsconn: record of unknown content type %d", typ))
	}
	if v := uint16(h[1])<<8 | uint16(h[2]); v != recordVersion {
		return 0, alertErr(alertProtocolVersion, fmt.Sprintf("tlsconn: record with version %#04x, want %#04x", v, recordVersion))
	}
	n := int(h[3])<<8 | int(h[4])
	if n > max {
		return 0, alertErr(alertRecordOverflow, fmt.Sprintf("tlsconn: record of %d bytes, more than the %d allowed", n, max))
	}
	return headerLen + n, nil
}

// onFreshStack runs f on a goroutine of its own and waits for it, for the
// rare deep work (a ticket handed to crypto/tls) that needs a closure; the
// cipher work of the read and write paths goes through record.OnFreshStack,
// which allocates nothing on the caller's stack.
func onFreshStack(f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	return <-done
}
