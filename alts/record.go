package alts

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
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

// keyMaterial is the record key of AES128GCMRekey, split into its
// key-derivation key and nonce mask. The two directions of a Conn read it;
// nothing writes it after NewConn.
//
// Only the 32-byte derivation key is kept, not an HMAC instance: an idle
// connection should not carry about 1 KiB of hash state that is needed once
// every 2^16 frames.
type keyMaterial struct {
	kdfKey [rekeyKDFKeyLen]byte
	mask   [counterSize]byte
}

// frameAEAD derives the frame AEAD of AES128GCMRekey for a counter whose
// bytes 2..7 are kdf[0:6]: the key is HMAC-SHA256(kdfKey, kdf[0:6] ||
// 0x01)[:16].
func (k *keyMaterial) frameAEAD(kdf *[6]byte) (cipher.AEAD, error) {
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

// recordCipher seals or opens the frames of one direction. It is not safe
// for concurrent use, and a Conn has one per direction, each with an AEAD
// of its own: crypto/cipher documents no concurrent use of an AEAD, so the
// reading and the writing goroutine never share one, even where their keys
// are equal (always for AES128GCM).
type recordCipher struct {
	ctr counter
	// aead is the frame AEAD; for AES128GCMRekey that of epoch kdfCtr
	// (counter bytes 2..7).
	aead   cipher.AEAD
	kdfCtr uint64
	keys   *keyMaterial // AES128GCMRekey only; nil for AES128GCM

	nonce   [counterSize]byte // of the frame prepare was last called for
	scratch [counterSize]byte
}

// init sets up c for protocol with key; directionBit sets byte 11 of the
// initial counter. It derives the first frame AEAD at once, so that the
// first frame read or written does not grow the stack of the goroutine that
// handles it (a reader parks right after). It returns an error wrapping
// ErrUnknownProtocol or ErrKeySize on bad arguments.
func (c *recordCipher) init(protocol string, key []byte, directionBit bool) error {
	switch protocol {
	case AES128GCM:
		if len(key) != aes128KeySize {
			return keySizeError(protocol, len(key), aes128KeySize)
		}
		aead, err := newAEAD(key)
		if err != nil {
			return err
		}
		*c = recordCipher{ctr: newCounter(aes128GCMCounterMask, directionBit), aead: aead}
		return nil
	case AES128GCMRekey:
		if len(key) != rekeyKeySize {
			return keySizeError(protocol, len(key), rekeyKeySize)
		}
		k := new(keyMaterial)
		copy(k.kdfKey[:], key[:rekeyKDFKeyLen])
		copy(k.mask[:], key[rekeyKDFKeyLen:])
		return c.initRekey(k, directionBit)
	default:
		return unknownProtocolError(protocol)
	}
}

// initRekey sets up c for AES128GCMRekey with keys, which c shares with the
// other direction of its Conn and never writes.
func (c *recordCipher) initRekey(keys *keyMaterial, directionBit bool) error {
	*c = recordCipher{ctr: newCounter(rekeyCounterMask, directionBit), keys: keys, kdfCtr: noEpoch}
	var zero [6]byte
	aead, err := keys.frameAEAD(&zero)
	if err != nil {
		return err
	}
	c.aead, c.kdfCtr = aead, 0
	return nil
}

// needsRekey reports whether the frame with counter value v is sealed under
// another frame key than c.aead's (AES128GCMRekey, every 2^16 frames).
func (c *recordCipher) needsRekey(v *[counterSize]byte) bool {
	return c.keys != nil && binary.LittleEndian.Uint64(v[:8])>>16 != c.kdfCtr
}

// rekey derives the frame AEAD for the counter value v. It allocates and
// goes deep into crypto/hmac and crypto/aes, so the read and write paths
// call it on a goroutine of its own (see rebuildOnFreshStack): once every
// 2^16 frames.
func (c *recordCipher) rekey(v *[counterSize]byte) error {
	aead, err := c.keys.frameAEAD((*[6]byte)(v[2:8]))
	if err != nil {
		return err
	}
	c.aead, c.kdfCtr = aead, binary.LittleEndian.Uint64(v[:8])>>16
	return nil
}

// prepare makes c.aead and c.nonce right for the counter value v.
func (c *recordCipher) prepare(v *[counterSize]byte) error {
	if c.keys == nil {
		c.nonce = *v
		return nil
	}
	if c.needsRekey(v) {
		if err := rebuildOnFreshStack(c, v); err != nil {
			return err
		}
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
	if err := c.prepareNext(); err != nil {
		return nil, err
	}
	out := c.aead.Seal(dst, c.nonce[:], plaintext, nil)
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

// rebuildJob is a call of recordCipher.rekey that rebuildOnFreshStack
// hands to a goroutine of its own.
type rebuildJob struct {
	c    *recordCipher
	v    *[counterSize]byte
	err  error
	done atomic.Bool // err is set
}

var (
	// rebuildQueue carries each job to the goroutine started for it: one
	// goroutine per job sent, started after the send, so each finds one.
	rebuildQueue = make(chan *rebuildJob, 64)
	// idleJobs keeps finished jobs for reuse.
	idleJobs = make(chan *rebuildJob, 64)
)

// rebuildOnFreshStack runs c.rekey(v) on a goroutine of its own and waits
// for it, so that the stack rekey needs is not kept by the caller: a reader
// parks for as long as its connection is idle, and a goroutine whose stack
// once grew past 2 KiB keeps the larger stack while parked.
//
// It also keeps the runtime's allocator off the caller's stack: right after
// a collection an allocation may refill the allocator's caches and sweep
// on the allocating goroutine's stack, deep enough to grow a 2 KiB one. So
// the goroutine runs a function without arguments (no closure), the job comes
// from idleJobs (allocated only when more rebuilds than ever before run at
// once), and the caller waits by yielding until the job is done, not by
// blocking on a channel or lock, which may allocate (a sudog) when the
// runtime's caches of them are empty, as a collection leaves them. A
// rebuild takes microseconds.
func rebuildOnFreshStack(c *recordCipher, v *[counterSize]byte) error {
	var j *rebuildJob
	select {
	case j = <-idleJobs:
	default:
		j = new(rebuildJob)
	}
	j.c, j.v = c, v
	rebuildQueue <- j // blocks only when more than 64 jobs wait for their goroutines
	go runRebuildJob()
	for !j.done.Load() {
		runtime.Gosched()
	}
	err := j.err
	*j = rebuildJob{}
	select {
	case idleJobs <- j:
	default:
	}
	return err
}

// runRebuildJob runs one job from rebuildQueue.
func runRebuildJob() {
	j := <-rebuildQueue
	j.err = j.c.rekey(j.v)
	j.done.Store(true)
}
