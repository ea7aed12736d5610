package framing

import "encoding/binary"

// fastHeader parses the common fixed-size length fields (1, 2, 4 or 8 bytes,
// binary.BigEndian or binary.LittleEndian) without the generality of
// Spec.parseHeader. It only recognises complete, valid frames; for anything
// else (too short, invalid, or a Spec it does not handle) it reports false
// and the caller falls back to Spec.parseHeader, which has the errors.
type fastHeader struct {
	on     bool
	little bool
	signed bool
	size   uint8 // bytes of the length field
	end    uint8 // LengthOffset + size, at most maxHeader
	adj    int
	max    int
	strip  int // StripThroughLength resolved
}

func newFastHeader(s *Spec) fastHeader {
	switch {
	case s.Kind != Fixed,
		s.LengthSize != 1 && s.LengthSize != 2 && s.LengthSize != 4 && s.LengthSize != 8,
		s.ByteOrder != nil && s.ByteOrder != binary.BigEndian && s.ByteOrder != binary.LittleEndian,
		uint64(s.maxFrame()) > 1<<48: // keeps end+v+adj far from overflow (never on 32-bit)
		return fastHeader{}
	}
	x := fastHeader{
		on:     true,
		little: s.ByteOrder == binary.LittleEndian,
		signed: s.Signed,
		size:   uint8(s.LengthSize),
		end:    uint8(s.LengthOffset + s.LengthSize), // Validate: <= maxHeader
		adj:    s.Adjustment,
		max:    s.maxFrame(),
		strip:  s.Strip,
	}
	if x.strip == StripThroughLength {
		x.strip = int(x.end)
	}
	return x
}

// complete returns the header of the frame at the start of b if the frame is
// valid and wholly in b.
func (x *fastHeader) complete(b []byte) (header, bool) {
	end, size := int(x.end), int(x.size)
	if !x.on || len(b) < end {
		return header{}, false
	}
	f := b[end-size : end]
	var v uint64
	switch size {
	case 1:
		v = uint64(f[0])
	case 2:
		if x.little {
			v = uint64(binary.LittleEndian.Uint16(f))
		} else {
			v = uint64(binary.BigEndian.Uint16(f))
		}
	case 4:
		if x.little {
			v = uint64(binary.LittleEndian.Uint32(f))
		} else {
			v = uint64(binary.BigEndian.Uint32(f))
		}
	default:
		if x.little {
			v = binary.LittleEndian.Uint64(f)
		} else {
			v = binary.BigEndian.Uint64(f)
		}
	}
	if x.signed && v>>(8*size-1) != 0 || v > uint64(x.max) {
		return header{}, false
	}
	frame := end + int(v) + x.adj
	if frame < end || frame > x.max || x.strip > frame || frame > len(b) {
		return header{}, false
	}
	return header{end: end, frame: frame, strip: x.strip}, true
}
