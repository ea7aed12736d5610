package alts

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
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
	hi        uint32
	mask      uint64
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

// recordCipher seals or opens frames of one direction. It is not safe for
// concurrent use; a Conn has one per direction.
type recordCipher struct {
	ctr  counter
	aead cipher.AEAD // the frame AEAD (for rekey: of kdfCtr)

	rekey   bool
	mac     hash.Hash // HMAC-SHA256 keyed with the KDF key
	mask    [counterSize]byte
	kdfCtr  uint64 // counter bytes 2..7 the current aead was derived for
	keyed   bool
	info    [7]byte
	sum     [sha256.Size]byte
	nonce   [counterSize]byte
	scratch [counterSize]byte
}

// init sets up c for protocol with key; directionBit sets byte 11 of the
// initial counter. It returns errUnknownProtocol or errKeySize on bad
// arguments.
func (c *recordCipher) init(protocol string, key []byte, directionBit bool) error {
	switch protocol {
	case AES128GCM:
		if len(key) != aes128KeySize {
			return keySizeError(protocol, len(key), aes128KeySize)
		}
		b, err := aes.NewCipher(key)
		if err != nil {
			return err
		}
		if c.aead, err = cipher.NewGCM(b); err != nil {
			return err
		}
		c.ctr = newCounter(aes128GCMCounterMask, directionBit)
	case AES128GCMRekey:
		if len(key) != rekeyKeySize {
			return keySizeError(protocol, len(key), rekeyKeySize)
		}
		c.rekey = true
		c.mac = hmac.New(sha256.New, key[:rekeyKDFKeyLen])
		copy(c.mask[:], key[rekeyKDFKeyLen:])
		c.ctr = newCounter(rekeyCounterMask, directionBit)
	default:
		return unknownProtocolError(protocol)
	}
	return nil
}

// prepare makes c.aead and c.nonce right for the counter value v. For the
// rekeying protocol it derives a new frame key when bytes 2..7 of v differ
// from those of the previous frame: HMAC-SHA256(kdfKey, v[2:8] || 0x01)[:16].
// That derivation allocates a new AES-GCM instance, once every 2^16 frames.
func (c *recordCipher) prepare(v *[counterSize]byte) error {
	if !c.rekey {
		c.nonce = *v
		return nil
	}
	lo := binary.LittleEndian.Uint64(v[:8])
	if kdf := lo >> 16; !c.keyed || kdf != c.kdfCtr {
		copy(c.info[:6], v[2:8])
		c.info[6] = 0x01
		c.mac.Reset()
		c.mac.Write(c.info[:])
		c.mac.Sum(c.sum[:0])
		b, err := aes.NewCipher(c.sum[:aes128KeySize])
		if err != nil {
			return err
		}
		if c.aead, err = cipher.NewGCM(b); err != nil {
			return err
		}
		clear(c.sum[:])
		c.kdfCtr, c.keyed = kdf, true
	}
	for i := range c.nonce {
		c.nonce[i] = v[i] ^ c.mask[i]
	}
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
