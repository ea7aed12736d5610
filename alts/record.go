package alts

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"sync"
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

// keySchedule is the key material that both directions of a Conn share.
// Both directions run under the same record key (the direction bit keeps
// their nonces apart), so they can also share a frame AEAD whenever their
// frame keys are equal: always for AES128GCM, and for AES128GCMRekey while
// both counters are in the same 2^16-frame epoch (counter bytes 2..7), which
// includes the first 2^16 frames of each direction. An AES-GCM AEAD made by
// crypto/cipher.NewGCM over crypto/aes is not changed by Seal or Open: the
// key schedule and GHASH table are written once, in NewGCM (checked in the
// Go 1.26 sources, assembly and generic code). So the reading and the
// writing goroutine may use one at the same time.
//
// For AES128GCMRekey the schedule keeps only the 32-byte key-derivation key
// and the nonce mask, not an HMAC instance: an idle connection should not
// carry about 1 KiB of hash state that is needed once every 2^16 frames. The
// HMAC is built when a frame key is derived, which allocates (as the new
// AEAD does anyway) once per epoch and direction.
type keySchedule struct {
	// mu is held by a direction while it changes its frame AEAD, and by
	// the other direction while it looks at that AEAD to share it.
	mu     sync.Mutex
	rekey  bool
	kdfKey [rekeyKDFKeyLen]byte
	mask   [counterSize]byte
}

// init sets up k for protocol and key. For AES128GCM it returns the frame
// AEAD of both directions; for AES128GCMRekey it returns nil and the frame
// AEADs are derived when the first frame needs them.
func (k *keySchedule) init(protocol string, key []byte) (cipher.AEAD, error) {
	switch protocol {
	case AES128GCM:
		if len(key) != aes128KeySize {
			return nil, keySizeError(protocol, len(key), aes128KeySize)
		}
		return newAEAD(key)
	case AES128GCMRekey:
		if len(key) != rekeyKeySize {
			return nil, keySizeError(protocol, len(key), rekeyKeySize)
		}
		k.rekey = true
		copy(k.kdfKey[:], key[:rekeyKDFKeyLen])
		copy(k.mask[:], key[rekeyKDFKeyLen:])
		return nil, nil
	default:
		return nil, unknownProtocolError(protocol)
	}
}

// frameAEAD derives the frame AEAD of AES128GCMRekey for a counter whose
// bytes 2..7 are kdf[0:6]: the key is HMAC-SHA256(kdfKey, kdf[0:6] ||
// 0x01)[:16].
func (k *keySchedule) frameAEAD(kdf *[6]byte) (cipher.AEAD, error) {
	var info [7]byte
	copy(info[:6], kdf[:])
	info[6] = 0x01
	mac := hmac.New(sha256.New, k.kdfKey[:])
	mac.Write(info[:])
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

// noEpoch is the kdfCtr of a direction that has no frame AEAD yet: counter
// bytes 2..7 are at most 2^48-1.
const noEpoch = ^uint64(0)

// recordCipher seals or opens frames of one direction. It is not safe for
// concurrent use; a Conn has one per direction.
type recordCipher struct {
	ctr counter
	// aead is the frame AEAD (for rekey: of epoch kdfCtr). It may be the
	// same AEAD as other's. It and kdfCtr change only with keys.mu held;
	// the owner of c reads them without it.
	aead   cipher.AEAD
	kdfCtr uint64 // counter bytes 2..7 that aead was derived for, or noEpoch
	keys   *keySchedule
	other  *recordCipher // the opposite direction of the Conn, or nil

	nonce   [counterSize]byte
	scratch [counterSize]byte
}

// init sets up c, alone, for protocol with key; directionBit sets byte 11
// of the initial counter. It returns errUnknownProtocol or errKeySize on bad
// arguments. A Conn instead sets up one keySchedule and attaches both its
// directions to it.
func (c *recordCipher) init(protocol string, key []byte, directionBit bool) error {
	k := new(keySchedule)
	aead, err := k.init(protocol, key)
	if err != nil {
		return err
	}
	c.attach(k, aead, nil, directionBit)
	return nil
}

// attach makes c a direction under k, with aead the frame AEAD of
// AES128GCM (nil for AES128GCMRekey). other is the opposite direction, whose
// frame AEAD c takes over when it needs the same frame key.
func (c *recordCipher) attach(k *keySchedule, aead cipher.AEAD, other *recordCipher, directionBit bool) {
	c.keys, c.other, c.aead, c.kdfCtr = k, other, aead, noEpoch
	if k.rekey {
		c.ctr = newCounter(rekeyCounterMask, directionBit)
	} else {
		c.ctr = newCounter(aes128GCMCounterMask, directionBit)
	}
}

// prepare makes c.aead and c.nonce right for the counter value v. For the
// rekeying protocol the frame key changes whenever bytes 2..7 of v differ
// from those of the previous frame: c then shares the other direction's
// AEAD if that is keyed for the same bytes, and otherwise derives a new one
// (which allocates, once every 2^16 frames).
func (c *recordCipher) prepare(v *[counterSize]byte) error {
	if !c.keys.rekey {
		c.nonce = *v
		return nil
	}
	lo := binary.LittleEndian.Uint64(v[:8])
	if kdf := lo >> 16; kdf != c.kdfCtr {
		if err := c.rekeyTo(kdf, (*[6]byte)(v[2:8])); err != nil {
			return err
		}
	}
	for i := range c.nonce {
		c.nonce[i] = v[i] ^ c.keys.mask[i]
	}
	return nil
}

// rekeyTo switches c to the frame key of epoch kdf (whose bytes are b).
func (c *recordCipher) rekeyTo(kdf uint64, b *[6]byte) error {
	k := c.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if o := c.other; o != nil && o.kdfCtr == kdf {
		c.aead = o.aead
	} else {
		aead, err := k.frameAEAD(b)
		if err != nil {
			return err
		}
		c.aead = aead
	}
	c.kdfCtr = kdf
	return nil
}

// sealAt seals plaintext under counter value v and appends ciphertext and
// tag to dst. It does not touch the counter.
func (c *recordCipher) sealAt(dst []byte, v *[counterSize]byte, plaintext, aad []byte) ([]byte, error) {
	if err := c.prepare(v); err != nil {
		return nil, err
	}
	return c.aead.Seal(dst, c.nonce[:], plaintext, aad), nil
}

// openAt opens ciphertext (with tag) under counter value v and appends the
// plaintext to dst. It does not touch the counter.
func (c *recordCipher) openAt(dst []byte, v *[counterSize]byte, ciphertext, aad []byte) ([]byte, error) {
	if err := c.prepare(v); err != nil {
		return nil, err
	}
	out, err := c.aead.Open(dst, c.nonce[:], ciphertext, aad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// seal seals the next frame's plaintext, appending to dst, and advances the
// counter. It fails with ErrCounterOverflow once the counter is exhausted.
func (c *recordCipher) seal(dst, plaintext []byte) ([]byte, error) {
	if c.ctr.exhausted {
		return nil, ErrCounterOverflow
	}
	c.scratch = c.ctr.value()
	out, err := c.sealAt(dst, &c.scratch, plaintext, nil)
	if err != nil {
		return nil, err
	}
	c.ctr.inc()
	return out, nil
}

// open opens the next frame, appending the plaintext to dst, and advances
// the counter on success.
func (c *recordCipher) open(dst, ciphertext []byte) ([]byte, error) {
	if c.ctr.exhausted {
		return nil, ErrCounterOverflow
	}
	c.scratch = c.ctr.value()
	out, err := c.openAt(dst, &c.scratch, ciphertext, nil)
	if err != nil {
		return nil, err
	}
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
