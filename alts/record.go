package alts

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"weak"

	"github.com/readyconn/readyconn/internal/record"
)

// Wire constants of the ALTS record protocol.
const (
	lenFieldSize   = 4
	typeFieldSize  = 4
	headerSize     = lenFieldSize + typeFieldSize
	tagSize        = 16
	frameOverhead  = headerSize + tagSize // 24
	recordMsgType  = 6
	counterSize    = 12
	aes128KeySize  = 16
	rekeyKDFKeyLen = 32
	rekeyKeySize   = rekeyKDFKeyLen + counterSize // 44

	// overflow masks: the counter bytes that may count (5 for AES128GCM,
	// 8 for the rekeying protocol), as a mask over the low 8 bytes.
	aes128GCMCounterMask = 1<<40 - 1
	rekeyCounterMask     = ^uint64(0)
)

// frameLength is the record.Format Length of an ALTS frame: h is its 8-byte
// header (length, which does not count itself, and type, both
// little-endian). It refuses a length outside [20, MaxFrameSize] and a type
// whose low byte is not 6, as grpc-go does, before any buffer is sized for
// the frame.
func frameLength(h []byte) (int, error) {
	length := binary.LittleEndian.Uint32(h)
	if length < typeFieldSize+tagSize || length > MaxFrameSize {
		return 0, fmt.Errorf("%w: length field %d outside [%d, %d]", ErrMalformed, length, typeFieldSize+tagSize, MaxFrameSize)
	}
	if t := binary.LittleEndian.Uint32(h[lenFieldSize:]); t&0xff != recordMsgType {
		return 0, fmt.Errorf("%w: message type %#x, want low byte %#x", ErrMalformed, t, recordMsgType)
	}
	return lenFieldSize + int(length), nil
}

// counter is the 96-bit little-endian frame counter of one direction. Only
// the low 8 bytes can change (lo, as a little-endian uint64; mask says which
// of its bits count); the high 4 bytes (with the direction bit) are fixed.
type counter struct {
	lo        uint64
	mask      uint64
	hi        uint32
	exhausted bool // every value has been used: refuse further frames
}

func newCounter(mask uint64, directionBit bool) counter {
	c := counter{mask: mask}
	if directionBit {
		c.hi = 0x80 << 24
	}
	return c
}

func (c *counter) set(v [counterSize]byte) {
	c.lo = binary.LittleEndian.Uint64(v[:8])
	c.hi = binary.LittleEndian.Uint32(v[8:])
	c.exhausted = false
}

func (c *counter) value() (v [counterSize]byte) {
	binary.LittleEndian.PutUint64(v[:8], c.lo)
	binary.LittleEndian.PutUint32(v[8:], c.hi)
	return v
}

// inc advances the counter after a frame used its current value. Like
// grpc-go's Counter.Inc, the last value that fits is usable; the increment
// past it exhausts the counter instead of wrapping.
func (c *counter) inc() {
	next := (c.lo + 1) & c.mask
	c.lo = c.lo&^c.mask | next
	if next == 0 {
		c.exhausted = true
	}
}

// keyMaterial is the record key of a Conn, which both its directions read
// and nothing writes after NewConn: the AES-128 key of AES128GCM, or the
// key-derivation key and nonce mask of AES128GCMRekey.
//
// It is kept so that a direction can rebuild its frame AEAD after dropping
// it while idle (see recordCipher). For AES128GCMRekey only the 32-byte
// derivation key is kept, not an HMAC instance: an idle connection should
// not carry about 1 KiB of hash state that is needed once every 2^16
// frames.
type keyMaterial struct {
	// key is the AES-128 key (AES128GCM, first 16 bytes) or the
	// key-derivation key (AES128GCMRekey).
	key   [rekeyKDFKeyLen]byte
	mask  [counterSize]byte // AES128GCMRekey only
	rekey bool              // AES128GCMRekey
}

// newKeyMaterial checks key for protocol and copies it. It returns an error
// wrapping ErrUnknownProtocol or ErrKeySize on bad arguments.
func newKeyMaterial(protocol string, key []byte) (*keyMaterial, error) {
	k := new(keyMaterial)
	switch protocol {
	case AES128GCM:
		if len(key) != aes128KeySize {
			return nil, keySizeError(protocol, len(key), aes128KeySize)
		}
		copy(k.key[:], key)
	case AES128GCMRekey:
		if len(key) != rekeyKeySize {
			return nil, keySizeError(protocol, len(key), rekeyKeySize)
		}
		copy(k.key[:], key[:rekeyKDFKeyLen])
		copy(k.mask[:], key[rekeyKDFKeyLen:])
		k.rekey = true
	default:
		return nil, unknownProtocolError(protocol)
	}
	return k, nil
}

// frameAEAD returns the frame AEAD of epoch (counter bytes 2..7, as a
// little-endian number; ignored for AES128GCM, whose key is k.key[:16]).
// For AES128GCMRekey the frame key is HMAC-SHA256(k.key, counter bytes
// 2..7 || 0x01)[:16].
func (k *keyMaterial) frameAEAD(epoch uint64) (cipher.AEAD, error) {
	if !k.rekey {
		return newAEAD(k.key[:aes128KeySize])
	}
	var info [8]byte
	binary.LittleEndian.PutUint64(info[:], epoch)
	info[6] = 0x01
	mac := hmac.New(sha256.New, k.key[:])
	mac.Write(info[:7])
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	aead, err := newAEAD(sum[:aes128KeySize])
	clear(sum[:])
	return aead, err
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// epochOf is the key epoch of counter value v: its bytes 2..7, which select
// the frame key of AES128GCMRekey.
func epochOf(v *[counterSize]byte) uint64 {
	return binary.LittleEndian.Uint64(v[:8]) >> 16
}

// recordCipher seals or opens the frames of one direction. It is not safe
// for concurrent use, and a Conn has one per direction, each with an AEAD
// of its own: crypto/cipher documents no concurrent use of an AEAD, so the
// reading and the writing goroutine never share one, even where their keys
// are equal (always for AES128GCM).
//
// Its AEAD (about 770 bytes of AES key schedule and GHASH table) is held
// strongly only while the direction is in use: when the reader waits with
// nothing buffered, or a Write returns, release drops the strong reference
// and keeps a weak one. If no collection runs before the next frame, the
// same AEAD is taken back (no allocation); otherwise it is rebuilt from the
// key kept in keys, for the epoch of the frame's counter value. So a
// connection idle across a collection holds no cipher state beyond its
// key, and a busy one pays nothing. Rebuilding never touches the counter.
type recordCipher struct {
	ctr  counter
	box  *aeadBox              // the frame AEAD while in use; nil while idle
	weak weak.Pointer[aeadBox] // the frame AEAD until a collection finds it unused
	// epoch is the key epoch (counter bytes 2..7) of the AEAD in box or
	// weak; always 0 for AES128GCM, whose one key serves every frame.
	epoch uint64
	keys  *keyMaterial // shared with the other direction; never written

	nonce   [counterSize]byte // of the frame prepare was last called for
	scratch [counterSize]byte
}

// aeadBox gives the AEAD interface value an address for weak.Pointer.
type aeadBox struct{ cipher.AEAD }

// init sets up c for protocol with key (copied); directionBit sets byte 11
// of the initial counter. It returns an error wrapping ErrUnknownProtocol
// or ErrKeySize on bad arguments.
func (c *recordCipher) init(protocol string, key []byte, directionBit bool) error {
	keys, err := newKeyMaterial(protocol, key)
	if err != nil {
		return err
	}
	return c.initKeys(keys, directionBit)
}

// initKeys sets up c with keys, which c shares with the other direction of
// its Conn and never writes; directionBit sets byte 11 of the initial
// counter. It builds the first frame AEAD at once, so that a first frame
// that comes before the next collection need not (a reader parks right
// after), and holds it weakly, as an idle direction does.
func (c *recordCipher) initKeys(keys *keyMaterial, directionBit bool) error {
	mask := uint64(aes128GCMCounterMask)
	if keys.rekey {
		mask = rekeyCounterMask
	}
	*c = recordCipher{ctr: newCounter(mask, directionBit), keys: keys}
	var zero [counterSize]byte
	if err := c.rebuild(&zero); err != nil {
		return err
	}
	c.release()
	return nil
}

// release drops the strong reference to the AEAD: the direction is idle.
func (c *recordCipher) release() { c.box = nil }

// acquired makes c.box hold the AEAD again if no collection freed it, and
// reports whether c.box is then the frame AEAD for counter value v, so
// that prepare need not rebuild it.
func (c *recordCipher) acquired(v *[counterSize]byte) bool {
	if c.box == nil {
		c.box = c.weak.Value()
	}
	return c.box != nil && (!c.keys.rekey || epochOf(v) == c.epoch)
}

// rebuild makes c.box the frame AEAD for counter value v, built from the
// key: every 2^16 frames for AES128GCMRekey, and whenever a collection
// freed the AEAD of an idle direction. It does not touch the counter. It
// allocates and goes deep into crypto/hmac and crypto/aes, so the read and
// write paths call it on a goroutine of its own (see rebuildOnFreshStack).
func (c *recordCipher) rebuild(v *[counterSize]byte) error {
	epoch := uint64(0)
	if c.keys.rekey {
		epoch = epochOf(v)
	}
	aead, err := c.keys.frameAEAD(epoch)
	if err != nil {
		return err
	}
	c.box = &aeadBox{aead}
	c.weak = weak.Make(c.box)
	c.epoch = epoch
	return nil
}

// prepare makes c.box and c.nonce right for the counter value v.
func (c *recordCipher) prepare(v *[counterSize]byte) error {
	if !c.acquired(v) {
		if err := rebuildOnFreshStack(c, v); err != nil {
			return err
		}
	}
	if !c.keys.rekey {
		c.nonce = *v
		return nil
	}
	for i := range c.nonce {
		c.nonce[i] = v[i] ^ c.keys.mask[i]
	}
	return nil
}

// prepareNext prepares c for the next frame: it fails with
// ErrCounterOverflow once the counter is exhausted.
func (c *recordCipher) prepareNext() error {
	if c.ctr.exhausted {
		return ErrCounterOverflow
	}
	c.scratch = c.ctr.value()
	return c.prepare(&c.scratch)
}

// sealAt seals plaintext under counter value v and appends ciphertext and
// tag to dst. It does not touch the counter.
func (c *recordCipher) sealAt(dst []byte, v *[counterSize]byte, plaintext, aad []byte) ([]byte, error) {
	if err := c.prepare(v); err != nil {
		return nil, err
	}
	return c.box.Seal(dst, c.nonce[:], plaintext, aad), nil
}

// openAt opens ciphertext (with tag) under counter value v and appends the
// plaintext to dst. It does not touch the counter.
func (c *recordCipher) openAt(dst []byte, v *[counterSize]byte, ciphertext, aad []byte) ([]byte, error) {
	if err := c.prepare(v); err != nil {
		return nil, err
	}
	out, err := c.box.Open(dst, c.nonce[:], ciphertext, aad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// seal seals the next frame's plaintext, appending to dst, and advances the
// counter. It fails with ErrCounterOverflow once the counter is exhausted.
func (c *recordCipher) seal(dst, plaintext []byte) ([]byte, error) {
	if err := c.prepareNext(); err != nil {
		return nil, err
	}
	out := c.box.Seal(dst, c.nonce[:], plaintext, nil)
	c.ctr.inc()
	return out, nil
}

// framesLeft is how many more frames the counter allows (saturating).
func (c *recordCipher) framesLeft() uint64 {
	if c.ctr.exhausted {
		return 0
	}
	left := c.ctr.mask - c.ctr.lo&c.ctr.mask // frames after this one
	if left == ^uint64(0) {
		return left
	}
	return left + 1
}

// rebuildOnFreshStack runs c.rebuild(v) through record.OnFreshStack: on a
// goroutine of its own, without allocating on the caller's stack (see
// there), so that a reader that parks afterwards keeps its 2 KiB stack. It
// passes v in c.scratch, which prepare's callers do not use meanwhile.
func rebuildOnFreshStack(c *recordCipher, v *[counterSize]byte) error {
	c.scratch = *v
	return record.OnFreshStack((*rebuilder)(c))
}

// rebuilder is a recordCipher as a record.Job: it rebuilds the AEAD for the
// counter value in scratch.
type rebuilder recordCipher

func (r *rebuilder) Run() error {
	c := (*recordCipher)(r)
	return c.rebuild(&c.scratch)
}
