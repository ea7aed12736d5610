package framing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// LengthKind says how the length field is encoded.
type LengthKind uint8

const (
	// Fixed is a LengthSize-byte integer (1, 2, 3, 4 or 8 bytes) in
	// Spec.ByteOrder, unsigned unless Spec.Signed is set.
	Fixed LengthKind = iota
	// MQTTVarint is MQTT's Variable Byte Integer (MQTT 3.1.1 §2.2.3, MQTT 5.0
	// §1.5.5): 1 to 4 bytes, 7 bits each, least significant group first,
	// the high bit set on every byte but the last; at most 268,435,455. A
	// fifth byte is refused with ErrInvalidLength.
	MQTTVarint
	// Uvarint is a protobuf base-128 varint as read by
	// [encoding/binary.Uvarint]: 1 to 10 bytes; a value that overflows 64 bits
	// is refused with ErrInvalidLength.
	Uvarint
)

func (k LengthKind) String() string {
	switch k {
	case Fixed:
		return "Fixed"
	case MQTTVarint:
		return "MQTTVarint"
	case Uvarint:
		return "Uvarint"
	}
	return fmt.Sprintf("LengthKind(%d)", uint8(k))
}

// maxLen is the largest encoded size of the length field.
func (k LengthKind) maxLen(size int) int {
	switch k {
	case MQTTVarint:
		return 4
	case Uvarint:
		return binary.MaxVarintLen64
	}
	return size
}

// StripThroughLength, used as Spec.Strip, strips every byte up to the end of
// the length field, however many bytes the field took. It is meant for
// varint lengths, whose encoded size differs from frame to frame; with a
// Fixed length it is the same as Strip = LengthOffset + LengthSize.
const StripThroughLength = -1

// DefaultMaxFrameSize is the frame size limit of a Spec whose MaxFrameSize is
// 0: 4 MiB plus 5 bytes, gRPC's default receive limit for a message plus its
// prefix.
const DefaultMaxFrameSize = 4<<20 + 5

// Spec describes where a frame's length lives and how it is interpreted. It
// has the semantics of Netty's LengthFieldBasedFrameDecoder: a frame starts
// with LengthOffset bytes of header, then the length field, and its total
// size on the wire is
//
//	LengthOffset + (encoded size of the length field) + value + Adjustment
//
// bytes. The reader hands out the frame without its first Strip bytes.
//
// The zero Spec is not valid (it has no length field); see [Spec.Validate].
type Spec struct {
	// LengthOffset is the number of bytes before the length field
	// (Netty's lengthFieldOffset).
	LengthOffset int
	// LengthSize is the size of a Fixed length field in bytes: 1, 2, 3, 4
	// or 8 (Netty's lengthFieldLength). It must be 0 for varint kinds.
	LengthSize int
	// Kind is the encoding of the length field; Fixed by default.
	Kind LengthKind
	// ByteOrder of a Fixed length field; nil means big endian.
	ByteOrder binary.ByteOrder
	// Signed makes a Fixed length field a two's-complement integer; a
	// negative value is refused with ErrInvalidLength (Kafka, PostgreSQL
	// int32 lengths). Without it an 8-byte field is unsigned and values
	// too large for an int are refused with ErrFrameTooLarge.
	Signed bool
	// Adjustment is added to the length value to get the number of bytes
	// that follow the length field (Netty's lengthAdjustment). It is
	// negative when the value counts the header too.
	Adjustment int
	// Strip is the number of bytes removed from the start of every frame
	// before the caller sees it (Netty's initialBytesToStrip), or
	// StripThroughLength. It may not exceed the shortest possible frame,
	// LengthOffset + LengthSize + max(Adjustment, 0) (with the length
	// field counted as 1 byte for varints).
	Strip int
	// MaxFrameSize is the largest frame accepted, counting every byte on
	// the wire including the header (Netty's maxFrameLength). 0 means
	// DefaultMaxFrameSize.
	MaxFrameSize int
}

var (
	// ErrFrameTooLarge reports a frame whose announced size exceeds
	// Spec.MaxFrameSize, or a payload too large for the length field. It is
	// returned before any memory of that size is taken.
	ErrFrameTooLarge = errors.New("framing: frame too large")
	// ErrInvalidLength reports a length field that cannot be valid: negative,
	// smaller than the header it belongs to, or a malformed varint.
	ErrInvalidLength = errors.New("framing: invalid length field")
	// ErrInvalidSpec is wrapped by every error [Spec.Validate] returns.
	ErrInvalidSpec = errors.New("framing: invalid spec")
)

func specErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, args...)...)
}

// maxHeader bounds LengthOffset so that every header, up to the end of the
// length field, fits in a small array inside the Reader.
const maxHeader = 64

// maxMaxFrame bounds MaxFrameSize (1 TiB) so that length arithmetic cannot
// overflow.
const maxMaxFrame = 1 << 40

// Validate reports whether s describes a frame format that can exist. The
// error wraps ErrInvalidSpec and says what is wrong. NewReader and NewWriter
// call it.
func (s Spec) Validate() error {
	switch s.Kind {
	case Fixed:
		switch s.LengthSize {
		case 1, 2, 3, 4, 8:
		default:
			return specErr("LengthSize %d is not 1, 2, 3, 4 or 8", s.LengthSize)
		}
		if s.Signed && s.LengthSize == 3 {
			return specErr("a signed length must be 1, 2, 4 or 8 bytes")
		}
	case MQTTVarint, Uvarint:
		if s.LengthSize != 0 {
			return specErr("LengthSize must be 0 for %v (got %d)", s.Kind, s.LengthSize)
		}
		if s.Signed {
			return specErr("%v cannot be signed", s.Kind)
		}
	default:
		return specErr("unknown %v", s.Kind)
	}
	if s.LengthOffset < 0 {
		return specErr("negative LengthOffset %d", s.LengthOffset)
	}
	if s.LengthOffset+s.Kind.maxLen(s.LengthSize) > maxHeader {
		return specErr("LengthOffset %d puts the length field beyond the first %d bytes", s.LengthOffset, maxHeader)
	}
	max := s.maxFrame()
	if max < 0 || uint64(max) > maxMaxFrame {
		return specErr("MaxFrameSize %d outside [0, %d]", s.MaxFrameSize, uint64(maxMaxFrame))
	}
	minLen := s.LengthOffset + s.minLenSize()
	if minLen > max {
		return specErr("length field ends at byte %d, beyond MaxFrameSize %d", minLen, max)
	}
	if s.Adjustment < -math.MaxInt32 || s.Adjustment > math.MaxInt32 {
		return specErr("Adjustment %d out of range", s.Adjustment)
	}
	if s.Strip < StripThroughLength {
		return specErr("negative Strip %d", s.Strip)
	}
	if shortest := minLen + max0(s.Adjustment); s.Strip > shortest {
		return specErr("Strip %d is beyond the shortest possible frame (%d bytes)", s.Strip, shortest)
	}
	if s.Kind == Fixed && s.LengthSize < 8 {
		// The largest value must be able to describe at least the shortest frame.
		top := int64(1)<<(8*s.LengthSize) - 1
		if s.Signed {
			top = int64(1)<<(8*s.LengthSize-1) - 1
		}
		if top+int64(s.Adjustment) < 0 {
			return specErr("Adjustment %d makes every %d-byte length invalid", s.Adjustment, s.LengthSize)
		}
	}
	return nil
}

func max0(n int) int {
	if n < 0 {
		return 0
	}
	return n
}

func (s *Spec) maxFrame() int {
	if s.MaxFrameSize == 0 {
		return DefaultMaxFrameSize
	}
	return s.MaxFrameSize
}

func (s *Spec) minLenSize() int {
	if s.Kind == Fixed {
		return s.LengthSize
	}
	return 1
}

func (s *Spec) order() binary.ByteOrder {
	if s.ByteOrder == nil {
		return binary.BigEndian
	}
	return s.ByteOrder
}

// header is the result of parsing the start of a frame.
type header struct {
	end   int // bytes up to the end of the length field
	frame int // total frame size on the wire
	strip int // bytes to strip (StripThroughLength resolved)
}

// parseHeader parses the length field of the frame starting at b[0]. It
// returns ok == false if b is too short to tell. It takes no memory.
func (s *Spec) parseHeader(b []byte) (h header, ok bool, err error) {
	off := s.LengthOffset
	var v uint64
	var n int
	switch s.Kind {
	case Fixed:
		n = s.LengthSize
		if len(b) < off+n {
			return h, false, nil
		}
		f := b[off : off+n]
		o := s.order()
		switch n {
		case 1:
			v = uint64(f[0])
			if s.Signed && int8(f[0]) < 0 {
				return h, true, errNegative(int64(int8(f[0])))
			}
		case 2:
			x := o.Uint16(f)
			if s.Signed && int16(x) < 0 {
				return h, true, errNegative(int64(int16(x)))
			}
			v = uint64(x)
		case 3:
			if isLittle(o) {
				v = uint64(f[0]) | uint64(f[1])<<8 | uint64(f[2])<<16
			} else {
				v = uint64(f[2]) | uint64(f[1])<<8 | uint64(f[0])<<16
			}
		case 4:
			x := o.Uint32(f)
			if s.Signed && int32(x) < 0 {
				return h, true, errNegative(int64(int32(x)))
			}
			v = uint64(x)
		case 8:
			v = o.Uint64(f)
			if s.Signed && int64(v) < 0 {
				return h, true, errNegative(int64(v))
			}
		}
	case MQTTVarint:
		for i := 0; ; i++ {
			if len(b) <= off+i {
				return h, false, nil
			}
			c := b[off+i]
			v |= uint64(c&0x7f) << (7 * i)
			if c < 0x80 {
				n = i + 1
				break
			}
			if i == 3 {
				return h, true, errMQTTTooLong
			}
		}
	case Uvarint:
		if len(b) <= off {
			return h, false, nil
		}
		v, n = binary.Uvarint(b[off:])
		if n == 0 {
			if len(b)-off >= binary.MaxVarintLen64 {
				return h, true, errVarintOverflow
			}
			return h, false, nil
		}
		if n < 0 {
			return h, true, errVarintOverflow
		}
	}
	h.end = off + n
	max := s.maxFrame()
	// Netty order: negative (above), then shorter than the header, then too
	// large. Values beyond max+|Adjustment| are too large whatever the header
	// (and would overflow below).
	if v > uint64(max)+uint64(max0(-s.Adjustment)) {
		return h, true, errLengthField(v, max)
	}
	frame := int64(h.end) + int64(v) + int64(s.Adjustment)
	if frame < int64(h.end) {
		return h, true, errShortFrame(frame, h.end)
	}
	if frame > int64(max) {
		return h, true, errTooLarge(frame, max)
	}
	h.frame = int(frame)
	h.strip = s.Strip
	if h.strip == StripThroughLength {
		h.strip = h.end
	}
	if h.strip > h.frame {
		return h, true, errShortStrip(h.frame, h.strip)
	}
	return h, true, nil
}

// The errors of parseHeader are built out of line, so that formatting them
// does not make parseHeader's stack frame large: it runs on the path of
// every frame, in goroutines that are parked between frames and keep any
// stack they have grown (see ReadFrame).
var (
	errMQTTTooLong    = fmt.Errorf("%w: MQTT variable byte integer longer than 4 bytes", ErrInvalidLength)
	errVarintOverflow = fmt.Errorf("%w: varint overflows 64 bits", ErrInvalidLength)
)

//go:noinline
func errNegative(v int64) error {
	return fmt.Errorf("%w: negative length %d", ErrInvalidLength, v)
}

//go:noinline
func errLengthField(v uint64, max int) error {
	return fmt.Errorf("%w: length field %d, limit %d", ErrFrameTooLarge, v, max)
}

//go:noinline
func errShortFrame(frame int64, end int) error {
	return fmt.Errorf("%w: frame of %d bytes is shorter than its %d-byte header", ErrInvalidLength, frame, end)
}

//go:noinline
func errTooLarge(frame int64, max int) error {
	return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, frame, max)
}

//go:noinline
func errShortStrip(frame, strip int) error {
	return fmt.Errorf("%w: frame of %d bytes is shorter than the %d bytes to strip", ErrInvalidLength, frame, strip)
}

// The errors of lengthValue, built out of line by errWriteLen.
const (
	errShortHeader = iota
	errNegativeValue
	errNoFit
	errMQTTMax
)

//go:noinline
func errWriteLen(kind int, a, b int64) error {
	switch kind {
	case errShortHeader:
		return fmt.Errorf("%w: %d bytes cannot hold the %d header bytes before the length field", ErrInvalidLength, a, b)
	case errNegativeValue:
		return fmt.Errorf("%w: %d bytes give the negative length %d", ErrInvalidLength, a, b)
	case errNoFit:
		return fmt.Errorf("%w: length %d does not fit in %d bytes", ErrFrameTooLarge, uint64(a), b)
	default:
		return fmt.Errorf("%w: length %d exceeds the MQTT maximum 268435455", ErrFrameTooLarge, a)
	}
}

// lengthValue returns the value of the length field for a frame whose bytes,
// without the length field, total p, and the encoded size of that field.
func (s *Spec) lengthValue(p int) (v uint64, n int, err error) {
	if p < s.LengthOffset {
		return 0, 0, errWriteLen(errShortHeader, int64(p), int64(s.LengthOffset))
	}
	val := int64(p) - int64(s.LengthOffset) - int64(s.Adjustment)
	if val < 0 {
		return 0, 0, errWriteLen(errNegativeValue, int64(p), val)
	}
	v = uint64(val)
	switch s.Kind {
	case Fixed:
		n = s.LengthSize
		bits := 8 * n
		if s.Signed {
			bits--
		}
		if bits < 64 && v >= 1<<bits {
			return 0, 0, errWriteLen(errNoFit, int64(v), int64(n))
		}
	case MQTTVarint:
		if v > 268435455 {
			return 0, 0, errWriteLen(errMQTTMax, int64(v), 0)
		}
		n = uvarintLen(v)
	case Uvarint:
		n = uvarintLen(v)
	}
	if f := int64(p) + int64(n); f > int64(s.maxFrame()) {
		return 0, 0, errTooLarge(f, s.maxFrame())
	}
	return v, n, nil
}

var probe = []byte{1, 0}

// isLittle reports whether o is a little-endian order; for orders other than
// the standard ones it decodes a probe.
func isLittle(o binary.ByteOrder) bool {
	switch o {
	case binary.LittleEndian:
		return true
	case binary.BigEndian:
		return false
	}
	return o.Uint16(probe) == 1
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// putLength encodes v (already checked by lengthValue) into b, which has the
// field's encoded size.
func (s *Spec) putLength(b []byte, v uint64) {
	switch s.Kind {
	case Fixed:
		o := s.order()
		switch len(b) {
		case 1:
			b[0] = byte(v)
		case 2:
			o.PutUint16(b, uint16(v))
		case 3:
			if isLittle(o) {
				b[0], b[1], b[2] = byte(v), byte(v>>8), byte(v>>16)
			} else {
				b[0], b[1], b[2] = byte(v>>16), byte(v>>8), byte(v)
			}
		case 4:
			o.PutUint32(b, uint32(v))
		case 8:
			o.PutUint64(b, v)
		}
	default:
		binary.PutUvarint(b, v)
	}
}

// Ready-made specs for common protocols. Each strips nothing: the caller sees
// the whole frame, header included, and writes everything but the length
// field (see [Writer.WriteFrame]). Copy one and set Strip to drop the header.
var (
	// Kafka is the Kafka wire protocol framing (kafka.apache.org/protocol,
	// "Common Request and Response Structure"): a 4-byte big-endian signed
	// size counting the bytes that follow it. MaxFrameSize is the broker's
	// default socket.request.max.bytes, 100 MiB, plus the size field.
	Kafka = Spec{LengthSize: 4, Signed: true, MaxFrameSize: 100<<20 + 4}

	// GRPCMessage is a gRPC Length-Prefixed-Message (gRPC over HTTP/2,
	// github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): a 1-byte
	// Compressed-Flag, then a 4-byte big-endian Message-Length counting the
	// message bytes. MaxFrameSize is grpc-go's default receive limit,
	// 4 MiB, plus the 5-byte prefix.
	GRPCMessage = Spec{LengthOffset: 1, LengthSize: 4, MaxFrameSize: 4<<20 + 5}

	// PostgreSQLMessage is a regular PostgreSQL frontend/backend message
	// (postgresql.org/docs/current/protocol-overview.html): a 1-byte message
	// type, then an Int32 length that counts itself but not the type byte.
	// MaxFrameSize is 1 GiB, PostgreSQL's MaxAllocSize.
	PostgreSQLMessage = Spec{LengthOffset: 1, LengthSize: 4, Signed: true, Adjustment: -4, MaxFrameSize: 1 << 30}

	// PostgreSQLStartup is PostgreSQL's untyped startup-phase message
	// (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest): an Int32
	// length that counts itself. MaxFrameSize is the server's
	// MAX_STARTUP_PACKET_LENGTH, 10000.
	PostgreSQLStartup = Spec{LengthSize: 4, Signed: true, Adjustment: -4, MaxFrameSize: 10000}

	// ALTSRecord is an ALTS record (cloud.google.com/docs/security/
	// encryption-in-transit/application-layer-transport-security, as
	// implemented by grpc-go credentials/alts/internal/conn): a 4-byte
	// little-endian length counting the bytes after it, which begin with
	// the 4-byte message type. MaxFrameSize is grpc-go's 1 MiB limit on
	// the length plus the length field.
	ALTSRecord = Spec{LengthSize: 4, ByteOrder: binary.LittleEndian, MaxFrameSize: 1<<20 + 4}

	// IggyRequest is an Apache Iggy TCP request (iggy.apache.org, binary
	// protocol): a 4-byte little-endian length counting the 4-byte
	// little-endian command code and the payload that follow it.
	IggyRequest = Spec{LengthSize: 4, ByteOrder: binary.LittleEndian, MaxFrameSize: 64<<20 + 4}

	// IggyResponse is an Apache Iggy TCP response: a 4-byte little-endian
	// status, then a 4-byte little-endian length counting the payload.
	IggyResponse = Spec{LengthOffset: 4, LengthSize: 4, ByteOrder: binary.LittleEndian, MaxFrameSize: 64<<20 + 8}

	// MemcachedBinary is a memcached binary-protocol packet
	// (github.com/memcached/memcached/wiki/BinaryProtocolRevamped): a
	// 24-byte header whose "total body length" is a 4-byte big-endian
	// field at offset 8, followed by that many bytes of extras, key and
	// value. MaxFrameSize allows memcached's default 1 MiB item plus
	// header, key and extras.
	MemcachedBinary = Spec{LengthOffset: 8, LengthSize: 4, Adjustment: 12, MaxFrameSize: 1<<20 + 24 + 250 + 32}

	// MQTT is an MQTT control packet (MQTT 3.1.1 §2.2, MQTT 5.0 §2.1): a
	// 1-byte fixed header, then the Remaining Length as a Variable Byte
	// Integer of 1–4 bytes counting the bytes after it. MaxFrameSize is
	// the largest packet MQTT can describe.
	MQTT = Spec{LengthOffset: 1, Kind: MQTTVarint, MaxFrameSize: 1 + 4 + 268435455}
)
