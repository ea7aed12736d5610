package framing

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/big"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzSpec builds a Spec from fuzzer-chosen numbers; ok is false when the
// Spec is invalid.
func fuzzSpec(kind, size, offset uint8, adj int8, strip int8, maxFrame uint16, flags uint8) (Spec, bool) {
	s := Spec{
		LengthOffset: int(offset % 6),
		Kind:         LengthKind(kind % 3),
		Adjustment:   int(adj) % 16,
		Strip:        int(strip) % 12,
		MaxFrameSize: int(maxFrame % 2000),
		Signed:       flags&1 != 0,
	}
	if s.Kind == Fixed {
		s.LengthSize = []int{1, 2, 3, 4, 8}[size%5]
	}
	if flags&2 != 0 {
		s.ByteOrder = binary.LittleEndian
	}
	if s.Strip < 0 {
		s.Strip = StripThroughLength
	}
	return s, s.Validate() == nil
}

// refDecode is the reference decoder: the whole stream in memory, one frame
// after another, arbitrary-precision arithmetic, rules spelled out.
func refDecode(s Spec, data []byte) ([][]byte, string) {
	out := [][]byte{}
	maxFrame := int64(s.MaxFrameSize)
	if maxFrame == 0 {
		maxFrame = DefaultMaxFrameSize
	}
	for {
		if len(data) == 0 {
			return out, "EOF"
		}
		off := s.LengthOffset
		v := new(big.Int)
		n := 0
		switch s.Kind {
		case Fixed:
			n = s.LengthSize
			if len(data) < off+n {
				return out, "UnexpectedEOF"
			}
			field := slices.Clone(data[off : off+n])
			if s.ByteOrder == binary.LittleEndian {
				slices.Reverse(field)
			}
			v.SetBytes(field)
			if s.Signed && field[0]&0x80 != 0 {
				return out, "Invalid"
			}
		case MQTTVarint, Uvarint:
			limit := 4
			if s.Kind == Uvarint {
				limit = 10
			}
			for i := 0; ; i++ {
				if i == limit {
					return out, "Invalid"
				}
				if off+i >= len(data) {
					return out, "UnexpectedEOF"
				}
				c := data[off+i]
				v.Add(v, new(big.Int).Lsh(big.NewInt(int64(c&0x7f)), uint(7*i)))
				if c < 0x80 {
					n = i + 1
					break
				}
			}
			if v.BitLen() > 64 {
				return out, "Invalid"
			}
		}
		end := int64(off + n)
		frame := new(big.Int).Add(v, big.NewInt(end+int64(s.Adjustment)))
		if frame.Cmp(big.NewInt(end)) < 0 {
			return out, "Invalid"
		}
		if frame.Cmp(big.NewInt(maxFrame)) > 0 {
			return out, "TooLarge"
		}
		f := int(frame.Int64())
		strip := s.Strip
		if strip == StripThroughLength {
			strip = int(end)
		}
		if strip > f {
			return out, "Invalid"
		}
		if len(data) < f {
			return out, "UnexpectedEOF"
		}
		out = append(out, data[strip:f])
		data = data[f:]
	}
}

func FuzzReaderDifferential(f *testing.F) {
	for _, fx := range fixtures() {
		if len(fx.wire) < 1000 {
			f.Add(fx.wire, uint8(0), uint8(3), uint8(0), int8(0), int8(0), uint16(0), uint8(1), []byte{1, 2, 3}, uint16(64))
		}
	}
	f.Add(cat(hx("000c"), hw, hx("000e"), hw), uint8(0), uint8(1), uint8(0), int8(-2), int8(2), uint16(100), uint8(0), []byte{1}, uint16(64))
	f.Add(cat(hx("ca000cfe"), hw, hx("ca0001fe")), uint8(0), uint8(1), uint8(1), int8(1), int8(3), uint16(0), uint8(0), []byte{5, 1}, uint16(70))
	f.Add(hx("30 8001 00"), uint8(1), uint8(0), uint8(1), int8(0), int8(-1), uint16(0), uint8(0), []byte{}, uint16(64))
	f.Add(hx("ffffffffffffffffff01 00"), uint8(2), uint8(0), uint8(0), int8(0), int8(0), uint16(0), uint8(0), []byte{4}, uint16(64))
	// Shared read buffers, frames held and released in reverse.
	f.Add(cat(hx("000c"), hw, hx("0000"), hx("000c"), hw, hx("00")), uint8(0), uint8(1), uint8(0), int8(0), int8(2), uint16(0), uint8(8|16), []byte{20, 255}, uint16(64))
	f.Add(cat(hx("0c000000"), hw, hx("0c000000"), hw), uint8(0), uint8(3), uint8(0), int8(0), int8(4), uint16(0), uint8(2|8|16), []byte{}, uint16(0))
	// A Reset after the first frame, with it held, shared or not.
	f.Add(cat(hx("000c"), hw, hx("000c"), hw, hx("00")), uint8(0), uint8(1), uint8(0), int8(0), int8(2), uint16(0), uint8(8|16|32), []byte{20, 255}, uint16(64))
	f.Add(cat(hx("000c"), hw, hx("0003")), uint8(0), uint8(1), uint8(0), int8(0), int8(2), uint16(0), uint8(32), []byte{3}, uint16(64))
	f.Fuzz(func(t *testing.T, data []byte, kind, size, offset uint8, adj, strip int8, maxFrame uint16, flags uint8, splits []byte, readSize uint16) {
		spec, ok := fuzzSpec(kind, size, offset, adj, strip, maxFrame, flags)
		if !ok {
			return
		}
		want, wantErr := refDecode(spec, data)
		var chunks []int
		for _, s := range splits {
			chunks = append(chunks, int(s)+1)
		}
		pool := newDebugPool()
		r, err := NewReader(&chunkConn{data: data, chunks: chunks}, spec, WithPool(pool), WithReadSize(int(readSize%5000)))
		require.NoError(t, err)
		// flags&8: frames share their read buffer whatever its fill;
		// flags&16: frames are held until the end and released in reverse.
		r.shareAll = flags&8 != 0
		hold := flags&16 != 0
		// flags&32: read one frame (kept until the end), then Reset the
		// Reader onto the stream again from its start.
		var pre Frame
		if flags&32 != 0 {
			pre, err = r.ReadFrame()
			if err == nil {
				require.True(t, len(want) > 0 && bytes.Equal(want[0], pre.Bytes()), "first frame")
			}
			r.Reset(&chunkConn{data: data, chunks: chunks})
		}
		var held []Frame
		var got [][]byte
		into := flags&4 != 0
		var dst []byte
		for {
			var b []byte
			if into {
				dst, err = r.ReadFrameInto(dst)
				b = dst
			} else {
				var fr Frame
				fr, err = r.ReadFrame()
				b = slices.Clone(fr.Bytes())
				if hold {
					held = append(held, fr)
				} else {
					fr.Release()
				}
			}
			if err != nil {
				break
			}
			got = append(got, slices.Clone(b))
		}
		if pre.Len() > 0 {
			require.True(t, bytes.Equal(want[0], pre.Bytes()), "the frame from before the Reset intact")
		}
		pre.Release()
		for i := len(held) - 1; i >= 0; i-- {
			if i < len(got) {
				require.True(t, bytes.Equal(got[i], held[i].Bytes()), "held frame %d intact", i)
			}
			held[i].Release()
		}
		require.Equal(t, wantErr, errClass(err))
		require.Equal(t, len(want), len(got))
		for i := range want {
			require.True(t, bytes.Equal(want[i], got[i]), "frame %d", i)
		}
		require.Zero(t, pool.Stats().InUseBytes)
	})
}

// FuzzWriterReader writes the fuzzer's parts as frames and reads them back.
func FuzzWriterReader(f *testing.F) {
	f.Add([]byte("hello, world"), uint8(0), uint8(1), uint8(1), int8(0), int8(0), uint16(0), uint8(0), []byte{3, 4})
	f.Add([]byte("SELECT 1\x00"), uint8(0), uint8(3), uint8(1), int8(-4), int8(0), uint16(0), uint8(1), []byte{1})
	f.Add(bytes.Repeat([]byte{1}, 300), uint8(1), uint8(0), uint8(1), int8(0), int8(-1), uint16(0), uint8(0), []byte{0, 200})
	f.Add([]byte{}, uint8(2), uint8(0), uint8(0), int8(0), int8(0), uint16(0), uint8(0), []byte{})
	f.Fuzz(func(t *testing.T, data []byte, kind, size, offset uint8, adj, strip int8, maxFrame uint16, flags uint8, cuts []byte) {
		spec, ok := fuzzSpec(kind, size, offset, adj, strip, maxFrame, flags)
		if !ok {
			return
		}
		// Cut data into parts.
		var parts [][]byte
		rest := data
		for _, c := range cuts {
			k := min(int(c), len(rest))
			parts = append(parts, rest[:k])
			rest = rest[k:]
		}
		parts = append(parts, rest)

		var stream bytes.Buffer
		pool := newDebugPool()
		w, err := NewWriter(&stream, spec, WithPool(pool))
		require.NoError(t, err)
		// flags&8: vectored writes, and with flags&4 in pieces; otherwise
		// with flags&4 streamed in Writes of at most flags>>4+1 bytes.
		w.writev = flags&8 != 0
		switch {
		case w.writev:
			w.copyMax = 0
			if flags&4 != 0 {
				w.piece = int32(flags>>4) + 1
			}
		case flags&4 != 0:
			w.copyMax = int32(flags>>4) + 1
		}
		err = w.WriteFrame(parts...)
		if err != nil {
			require.Zero(t, stream.Len())
			c := errClass(err)
			require.True(t, c == "TooLarge" || c == "Invalid", c)
			return
		}
		require.NoError(t, w.WriteFrame(parts...))
		wire := slices.Clone(stream.Bytes())
		require.Equal(t, 0, len(wire)%2)
		frame := wire[:len(wire)/2]
		// The frame is the parts with the length field inserted at LengthOffset.
		ln := len(frame) - len(data)
		require.Positive(t, ln)
		require.True(t, bytes.Equal(data, cat(frame[:spec.LengthOffset], frame[spec.LengthOffset+ln:])))
		// And the reference decoder agrees on its length.
		ref, refErr := refDecode(spec, wire)
		require.Equal(t, "EOF", refErr)
		require.Len(t, ref, 2)

		r, err := NewReader(&chunkConn{data: wire, chunks: []int{int(flags>>4) + 1}}, spec, WithPool(pool))
		require.NoError(t, err)
		got, err := readAll(t, r)
		require.Equal(t, io.EOF, err)
		require.Len(t, got, 2)
		require.True(t, bytes.Equal(ref[0], got[0]) && bytes.Equal(ref[1], got[1]))
		require.Zero(t, pool.Stats().InUseBytes)
	})
}
