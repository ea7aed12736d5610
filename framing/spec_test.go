package framing

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		ok   bool
	}{
		{"zero", Spec{}, false},
		{"len1", Spec{LengthSize: 1}, true},
		{"len3", Spec{LengthSize: 3}, true},
		{"len5", Spec{LengthSize: 5}, false},
		{"len16", Spec{LengthSize: 16}, false},
		{"signed-len3", Spec{LengthSize: 3, Signed: true}, false},
		{"negative-offset", Spec{LengthOffset: -1, LengthSize: 4}, false},
		{"offset-beyond-header-array", Spec{LengthOffset: 61, LengthSize: 4}, false},
		{"offset-60", Spec{LengthOffset: 60, LengthSize: 4}, true},
		{"offset-beyond-max", Spec{LengthOffset: 10, LengthSize: 4, MaxFrameSize: 13}, false},
		{"offset-at-max", Spec{LengthOffset: 10, LengthSize: 4, MaxFrameSize: 14}, true},
		{"negative-max", Spec{LengthSize: 4, MaxFrameSize: -1}, false},
		{"huge-max", Spec{LengthSize: 4, MaxFrameSize: math.MaxInt}, uint64(math.MaxInt) <= maxMaxFrame},
		{"strip-header", Spec{LengthOffset: 1, LengthSize: 4, Strip: 5}, true},
		{"strip-beyond-header", Spec{LengthOffset: 1, LengthSize: 4, Strip: 6}, false},
		{"strip-into-positive-adjustment", Spec{LengthSize: 2, Adjustment: 2, Strip: 4}, true},
		{"strip-beyond-adjustment", Spec{LengthSize: 2, Adjustment: 2, Strip: 5}, false},
		{"negative-strip", Spec{LengthSize: 2, Strip: -2}, false},
		{"strip-through-length", Spec{Kind: MQTTVarint, LengthOffset: 1, Strip: StripThroughLength}, true},
		{"varint-with-size", Spec{Kind: Uvarint, LengthSize: 4}, false},
		{"varint-signed", Spec{Kind: Uvarint, Signed: true}, false},
		{"unknown-kind", Spec{Kind: 9, LengthSize: 4}, false},
		{"adjustment-makes-all-invalid", Spec{LengthSize: 1, Adjustment: -300}, false},
		{"adjustment-negative-ok", Spec{LengthSize: 1, Adjustment: -255}, true},
		{"kafka", Kafka, true},
		{"grpc", GRPCMessage, true},
		{"pg", PostgreSQLMessage, true},
		{"pg-startup", PostgreSQLStartup, true},
		{"alts", ALTSRecord, true},
		{"iggy-req", IggyRequest, true},
		{"iggy-resp", IggyResponse, true},
		{"memcached", MemcachedBinary, true},
		{"mqtt", MQTT, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate()
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrInvalidSpec)
			}
		})
	}
}

// TestParseHeaderMQTTMax checks the largest MQTT length without reading
// 256 MiB.
func TestParseHeaderMQTTMax(t *testing.T) {
	h, ok, err := MQTT.parseHeader(hx("30 ffffff7f"))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, header{end: 5, frame: 5 + 268435455}, h)
	for _, tc := range []struct {
		b    []byte
		want int
	}{{hx("30 00"), 0}, {hx("30 7f"), 127}, {hx("30 8001"), 128}, {hx("30 ff7f"), 16383}, {hx("30 808001"), 16384}, {hx("30 ffff7f"), 2097151}, {hx("30 80808001"), 2097152}} {
		h, ok, err := MQTT.parseHeader(tc.b)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, len(tc.b)+tc.want, h.frame)
		_, ok, err = MQTT.parseHeader(tc.b[:len(tc.b)-1])
		require.NoError(t, err)
		require.False(t, ok)
	}
}

// customOrder is a byte order that is neither binary.BigEndian nor
// binary.LittleEndian (it behaves like little endian).
type customOrder struct{ binary.ByteOrder }

func TestCustomByteOrder3(t *testing.T) {
	s := Spec{LengthSize: 3, ByteOrder: customOrder{binary.LittleEndian}}
	h, ok, err := s.parseHeader(hx("020000"))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 5, h.frame)
	var b [3]byte
	s.putLength(b[:], 0x010203)
	require.Equal(t, hx("030201"), b[:])
}
