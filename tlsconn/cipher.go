package tlsconn

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"hash"
	"weak"
)

// Record sizes (RFC 8446 section 5, RFC 5246 section 6.2).
const (
	headerLen     = 5
	maxPlaintext  = 16384
	maxCipher13   = maxPlaintext + 256  // largest TLS 1.3 record body
	maxCipher12   = maxPlaintext + 2048 // largest TLS 1.2 record body
	tagLen        = 16
	explicitLen   = 8 // TLS 1.2 AES-GCM explicit nonce
	nonceLen      = 12
	maxSecretLen  = sha512.Size384
	recordVersion = tls.VersionTLS12 // legacy_record_version of every record after the handshake
)

// Content types.
const (
	typeChangeCipherSpec = 20
	typeAlert            = 21
	typeHandshake        = 22
	typeApplicationData  = 23
)

// suite describes the record protection of a cipher suite this package
// carries itself: the AEAD suites of TLS 1.3 and TLS 1.2.
type suite struct {
	id     uint16
	tls13  bool
	keyLen int
	// ivLen is the fixed nonce part taken from the key schedule: 12 bytes
	// XORed with the sequence number (TLS 1.3 and ChaCha20-Poly1305), or a
	// 4-byte salt before an explicit 8-byte nonce (TLS 1.2 AES-GCM).
	ivLen  int
	hash   func() hash.Hash
	chacha bool
}

func (s *suite) explicitNonce() bool { return !s.tls13 && !s.chacha }

var suites = []suite{
	{id: tls.TLS_AES_128_GCM_SHA256, tls13: true, keyLen: 16, ivLen: 12, hash: sha256.New},
	{id: tls.TLS_AES_256_GCM_SHA384, tls13: true, keyLen: 32, ivLen: 12, hash: sha512.New384},
	{id: tls.TLS_CHACHA20_POLY1305_SHA256, tls13: true, keyLen: 32, ivLen: 12, hash: sha256.New, chacha: true},

	{id: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, keyLen: 16, ivLen: 4, hash: sha256.New},
	{id: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, keyLen: 16, ivLen: 4, hash: sha256.New},
	{id: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, keyLen: 32, ivLen: 4, hash: sha512.New384},
	{id: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, keyLen: 32, ivLen: 4, hash: sha512.New384},
	{id: tls.TLS_RSA_WITH_AES_128_GCM_SHA256, keyLen: 16, ivLen: 4, hash: sha256.New},
	{id: tls.TLS_RSA_WITH_AES_256_GCM_SHA384, keyLen: 32, ivLen: 4, hash: sha512.New384},
	{id: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, keyLen: 32, ivLen: 12, hash: sha256.New, chacha: true},
	{id: tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, keyLen: 32, ivLen: 12, hash: sha256.New, chacha: true},
}

func suiteByID(id uint16, version uint16) *suite {
	for i := range suites {
		if s := &suites[i]; s.id == id && s.tls13 == (version == tls.VersionTLS13) {
			return s
		}
	}
	return nil
}

var errSeqOverflow = errors.New("tlsconn: record sequence number exhausted")

// halfConn protects the records of one direction. It is not safe for
// concurrent use; a Conn has one per direction, each under its own lock.
//
// Its AEAD (about 770 bytes of AES key schedule and GHASH table) is held
// strongly only while the direction is in use: when the reader parks with
// nothing buffered, or a Write returns, release drops the strong reference
// and keeps a weak one. If no collection runs before the next record, acquire
// takes the same AEAD back (no allocation); otherwise it rebuilds it from the
// key kept in secret. So a connection idle across a collection holds no
// cipher state beyond its key, and a busy one pays nothing.
type halfConn struct {
	box    *aeadBox              // the AEAD while in use; nil while idle
	weak   weak.Pointer[aeadBox] // the AEAD until a collection finds it unused
	suite  *suite
	seq    uint64
	iv     [nonceLen]byte
	nonce  [nonceLen]byte
	aad    [13]byte
	secret [maxSecretLen]byte // TLS 1.3: the traffic secret (KeyUpdate, rebuild); TLS 1.2: the key
}

// aeadBox gives the AEAD interface value an address for weak.Pointer.
type aeadBox struct{ cipher.AEAD }

// setAEAD makes aead the direction's AEAD.
func (h *halfConn) setAEAD(aead cipher.AEAD) {
	h.box = &aeadBox{aead}
	h.weak = weak.Make(h.box)
}

// release drops the strong reference to the AEAD: the direction is idle.
func (h *halfConn) release() { h.box = nil }

// acquire makes h.box hold the AEAD again, the same one if no collection
// freed it, or one rebuilt from the key. Rebuilding is deep (key schedule,
// allocation): a reader that parks afterwards calls it through
// record.OnFreshStack.
func (h *halfConn) acquire(newChaCha func([]byte) (cipher.AEAD, error)) error {
	if h.box != nil {
		return nil
	}
	if b := h.weak.Value(); b != nil {
		h.box = b
		return nil
	}
	return h.rebuild(newChaCha)
}

// acquired reports whether acquire would not need to rebuild.
func (h *halfConn) acquired() bool {
	if h.box == nil {
		h.box = h.weak.Value()
	}
	return h.box != nil
}

func (h *halfConn) rebuild(newChaCha func([]byte) (cipher.AEAD, error)) error {
	s := h.suite
	key := h.secret[:s.keyLen]
	if s.tls13 {
		k, err := expandLabel(s.hash, h.secret[:s.hash().Size()], "key", s.keyLen)
		if err != nil {
			return err
		}
		defer clear(k)
		key = k
	}
	aead, err := newAEAD(s, key, newChaCha)
	if err != nil {
		return err
	}
	h.setAEAD(aead)
	return nil
}

// newAEAD returns the record AEAD of s for key. newChaCha, if not nil,
// makes ChaCha20-Poly1305 AEADs (the standard library has none for
// callers).
func newAEAD(s *suite, key []byte, newChaCha func([]byte) (cipher.AEAD, error)) (cipher.AEAD, error) {
	if s.chacha {
		if newChaCha == nil {
			return nil, errNoChaCha
		}
		return newChaCha(key)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

var errNoChaCha = errors.New("tlsconn: no ChaCha20-Poly1305 implementation (see WithChaCha20Poly1305)")

// expandLabel is HKDF-Expand-Label of RFC 8446 section 7.1 with an empty
// context.
func expandLabel(h func() hash.Hash, secret []byte, label string, length int) ([]byte, error) {
	info := make([]byte, 0, 4+len("tls13 ")+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(len("tls13 ")+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	return hkdf.Expand(h, secret, string(info), length)
}

// setTrafficSecret keys h from a TLS 1.3 traffic secret and resets the
// sequence number.
func (h *halfConn) setTrafficSecret(s *suite, secret []byte, newChaCha func([]byte) (cipher.AEAD, error)) error {
	key, err := expandLabel(s.hash, secret, "key", s.keyLen)
	if err != nil {
		return err
	}
	iv, err := expandLabel(s.hash, secret, "iv", nonceLen)
	if err != nil {
		clear(key)
		return err
	}
	aead, err := newAEAD(s, key, newChaCha)
	clear(key)
	if err != nil {
		clear(iv)
		return err
	}
	h.setAEAD(aead)
	h.suite, h.seq = s, 0
	copy(h.iv[:], iv)
	clear(iv)
	clear(h.secret[:])
	copy(h.secret[:], secret)
	return nil
}

// nextTrafficSecret is the TLS 1.3 KeyUpdate: the next generation's secret,
// written over the current one, and fresh keys.
func (h *halfConn) update(newChaCha func([]byte) (cipher.AEAD, error)) error {
	s := h.suite
	n := s.hash().Size()
	next, err := expandLabel(s.hash, h.secret[:n], "traffic upd", n)
	if err != nil {
		return err
	}
	err = h.setTrafficSecret(s, next, newChaCha)
	clear(next)
	return err
}

// keyBlock12 is the TLS 1.2 key expansion (RFC 5246 section 6.3) for the
// AEAD suites: client and server write keys and IVs.
func keyBlock12(s *suite, master, clientRandom, serverRandom []byte) (clientKey, serverKey, clientIV, serverIV []byte) {
	seed := make([]byte, 0, len(serverRandom)+len(clientRandom))
	seed = append(seed, serverRandom...)
	seed = append(seed, clientRandom...)
	kb := make([]byte, 2*s.keyLen+2*s.ivLen)
	prf12(s.hash, master, "key expansion", seed, kb)
	clientKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	serverKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	clientIV, kb = kb[:s.ivLen], kb[s.ivLen:]
	serverIV = kb[:s.ivLen]
	return
}

// prf12 is the TLS 1.2 PRF, P_hash of RFC 5246 section 5, filling out.
func prf12(h func() hash.Hash, secret []byte, label string, seed []byte, out []byte) {
	labelSeed := make([]byte, 0, len(label)+len(seed))
	labelSeed = append(labelSeed, label...)
	labelSeed = append(labelSeed, seed...)
	mac := hmac.New(h, secret)
	a := labelSeed
	for off := 0; off < len(out); {
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(nil)
		mac.Reset()
		mac.Write(a)
		mac.Write(labelSeed)
		off += copy(out[off:], mac.Sum(nil))
	}
}

// set12 keys h for TLS 1.2 and sets its sequence number.
func (h *halfConn) set12(s *suite, key, iv []byte, seq uint64, newChaCha func([]byte) (cipher.AEAD, error)) error {
	aead, err := newAEAD(s, key, newChaCha)
	if err != nil {
		return err
	}
	h.setAEAD(aead)
	h.suite, h.seq = s, seq
	copy(h.iv[:], iv)
	clear(h.secret[:])
	copy(h.secret[:], key)
	return nil
}

// overhead is what a record adds to its content: header, explicit nonce,
// tag, and for TLS 1.3 the inner content type.
func (h *halfConn) overhead() int {
	switch {
	case h.suite.tls13:
		return headerLen + 1 + tagLen
	case h.suite.explicitNonce():
		return headerLen + explicitLen + tagLen
	}
	return headerLen + tagLen
}

// setNonce computes the nonce of sequence number seq into h.nonce.
func (h *halfConn) setNonce(seq uint64) {
	if h.suite.explicitNonce() {
		copy(h.nonce[:4], h.iv[:4])
		binary.BigEndian.PutUint64(h.nonce[4:], seq)
		return
	}
	h.nonce = h.iv
	for i := range 8 {
		h.nonce[4+i] ^= byte(seq >> (56 - 8*i))
	}
}

// seal writes a whole record of content type typ carrying content into
// dst, which must hold at least len(content)+h.overhead() bytes, and
// returns the record's length. content may alias dst only at the position
// the payload goes (see payloadOffset). It fails only when the sequence
// number is exhausted.
func (h *halfConn) seal(dst []byte, typ byte, content []byte) (int, error) {
	if h.seq == ^uint64(0) {
		return 0, errSeqOverflow
	}
	off := h.payloadOffset()
	n := len(content)
	copy(dst[off:], content)
	outerType, inner := typ, n
	if h.suite.tls13 {
		dst[off+n] = typ
		inner = n + 1
		outerType = typeApplicationData
	}
	total := off + inner + tagLen
	dst[0] = outerType
	binary.BigEndian.PutUint16(dst[1:], recordVersion)
	binary.BigEndian.PutUint16(dst[3:], uint16(total-headerLen))
	h.setNonce(h.seq)
	var aad []byte
	if h.suite.tls13 {
		aad = dst[:headerLen]
	} else {
		binary.BigEndian.PutUint64(h.aad[:8], h.seq)
		h.aad[8] = typ
		binary.BigEndian.PutUint16(h.aad[9:], recordVersion)
		binary.BigEndian.PutUint16(h.aad[11:], uint16(n))
		aad = h.aad[:]
		if h.suite.explicitNonce() {
			copy(dst[headerLen:], h.nonce[4:])
		}
	}
	h.box.Seal(dst[off:off], h.nonce[:], dst[off:off+inner], aad)
	h.seq++
	return total, nil
}

// payloadOffset is where the content starts in a sealed record.
func (h *halfConn) payloadOffset() int {
	if h.suite.explicitNonce() {
		return headerLen + explicitLen
	}
	return headerLen
}

// innerLen is the length the opened payload of record rec has (content,
// and for TLS 1.3 the inner type and padding), or -1 if rec is too short to
// be a protected record.
func (h *halfConn) innerLen(rec []byte) int {
	n := len(rec) - h.payloadOffset() - tagLen
	if n < 0 {
		return -1
	}
	return n
}

// prepareOpen sets the nonce of sequence number seq for record rec and
// returns the AEAD payload and additional data to open it with.
func (h *halfConn) prepareOpen(rec []byte, seq uint64) (payload, aad []byte) {
	payload = rec[h.payloadOffset():]
	h.setNonce(seq)
	if h.suite.explicitNonce() {
		copy(h.nonce[4:], rec[headerLen:headerLen+explicitLen])
	}
	if h.suite.tls13 {
		return payload, rec[:headerLen]
	}
	binary.BigEndian.PutUint64(h.aad[:8], seq)
	copy(h.aad[8:11], rec[:3])
	binary.BigEndian.PutUint16(h.aad[11:], uint16(len(payload)-tagLen))
	return payload, h.aad[:]
}

// content returns the content and content type of an opened record: for
// TLS 1.3 it strips the padding and takes the inner type (a payload of only
// zeros has type 0); for TLS 1.2 the type is the record's.
func (h *halfConn) content(opened, rec []byte) ([]byte, byte) {
	if !h.suite.tls13 {
		return opened, rec[0]
	}
	i := len(opened) - 1
	for i >= 0 && opened[i] == 0 {
		i--
	}
	if i < 0 {
		return opened[:0], 0
	}
	return opened[:i], opened[i]
}

// open authenticates and decrypts record rec (header included) with
// sequence number seq, appending the opened payload to dst, which may be
// the payload's own storage (rec[h.payloadOffset():][:0]) or memory that
// does not overlap rec. It returns the content, its content type, and false
// if authentication failed.
func (h *halfConn) open(dst, rec []byte, seq uint64) ([]byte, byte, bool) {
	payload, aad := h.prepareOpen(rec, seq)
	out, err := h.box.Open(dst, h.nonce[:], payload, aad)
	if err != nil {
		return nil, 0, false
	}
	content, typ := h.content(out, rec)
	return content, typ, true
}
