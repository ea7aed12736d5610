package framing

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

var hw = []byte("HELLO, WORLD")

type fixture struct {
	name  string
	spec  Spec
	wire  []byte
	want  [][]byte // frames as the Reader returns them
	err   error    // error after the frames (io.EOF if nil)
	write [][]byte // what Writer.WriteFrame takes to produce wire (nil: no writer check)
}

func rep(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func fixtures() []fixture {
	tag := rep(0xa5, 16)
	fs := []fixture{
		// The seven examples of Netty's LengthFieldBasedFrameDecoder Javadoc.
		{name: "netty1/len2", spec: Spec{LengthSize: 2},
			wire: cat(hx("000c"), hw), want: [][]byte{cat(hx("000c"), hw)}, write: [][]byte{hw}},
		{name: "netty2/len2-strip2", spec: Spec{LengthSize: 2, Strip: 2},
			wire: cat(hx("000c"), hw), want: [][]byte{hw}, write: [][]byte{hw}},
		{name: "netty3/len2-adj-2", spec: Spec{LengthSize: 2, Adjustment: -2},
			wire: cat(hx("000e"), hw), want: [][]byte{cat(hx("000e"), hw)}, write: [][]byte{hw}},
		{name: "netty4/off2-len3", spec: Spec{LengthOffset: 2, LengthSize: 3},
			wire: cat(hx("cafe 00000c"), hw), want: [][]byte{cat(hx("cafe 00000c"), hw)}, write: [][]byte{hx("cafe"), hw}},
		{name: "netty5/len3-adj2", spec: Spec{LengthSize: 3, Adjustment: 2},
			wire: cat(hx("00000c cafe"), hw), want: [][]byte{cat(hx("00000c cafe"), hw)}, write: [][]byte{hx("cafe"), hw}},
		{name: "netty6/off1-len2-adj1-strip3", spec: Spec{LengthOffset: 1, LengthSize: 2, Adjustment: 1, Strip: 3},
			wire: cat(hx("ca 000c fe"), hw), want: [][]byte{cat(hx("fe"), hw)}, write: [][]byte{hx("cafe"), hw}},
		{name: "netty7/off1-len2-adj-3-strip3", spec: Spec{LengthOffset: 1, LengthSize: 2, Adjustment: -3, Strip: 3},
			wire: cat(hx("ca 0010 fe"), hw), want: [][]byte{cat(hx("fe"), hw)}, write: [][]byte{hx("ca"), hx("fe"), hw}},

		// Kafka ApiVersions v0: request (api_key 18, version 0, correlation
		// id 1, client id "test") and response (correlation id 1, no error,
		// one entry: ApiVersions 0..3).
		{name: "kafka/apiversions-request", spec: Kafka,
			wire:  hx("0000000e 0012 0000 00000001 0004 74657374"),
			want:  [][]byte{hx("0000000e 0012 0000 00000001 0004 74657374")},
			write: [][]byte{hx("0012 0000 00000001"), hx("0004 74657374")}},
		{name: "kafka/apiversions-response", spec: Kafka,
			wire:  hx("00000010 00000001 0000 00000001 0012 0000 0003"),
			want:  [][]byte{hx("00000010 00000001 0000 00000001 0012 0000 0003")},
			write: [][]byte{hx("00000001 0000 00000001 0012 0000 0003")}},
		{name: "kafka/negative", spec: Kafka, wire: hx("ffffffff 00"), err: ErrInvalidLength},
		{name: "kafka/too-large", spec: Kafka, wire: hx("06400001"), err: ErrFrameTooLarge},

		// PostgreSQL.
		{name: "pg/sslrequest", spec: PostgreSQLStartup,
			wire: hx("00000008 04d2162f"), want: [][]byte{hx("00000008 04d2162f")}, write: [][]byte{hx("04d2162f")}},
		{name: "pg/startup-too-short", spec: PostgreSQLStartup, wire: hx("00000003"), err: ErrInvalidLength},
		{name: "pg/startup-too-large", spec: PostgreSQLStartup, wire: hx("00002711"), err: ErrFrameTooLarge},
		{name: "pg/query", spec: PostgreSQLMessage,
			wire:  cat(hx("51 0000000d"), []byte("SELECT 1\x00")),
			want:  [][]byte{cat(hx("51 0000000d"), []byte("SELECT 1\x00"))},
			write: [][]byte{[]byte("Q"), []byte("SELECT 1\x00")}},
		{name: "pg/readyforquery", spec: PostgreSQLMessage,
			wire: hx("5a 00000005 49"), want: [][]byte{hx("5a 00000005 49")}, write: [][]byte{hx("5a49")}},
		{name: "pg/length-3", spec: PostgreSQLMessage, wire: hx("5a 00000003 49"), err: ErrInvalidLength},
		{name: "pg/negative", spec: PostgreSQLMessage, wire: hx("5a 80000000"), err: ErrInvalidLength},
		{name: "pg/truncated", spec: PostgreSQLMessage, wire: hx("5a 00000006 49"), err: io.ErrUnexpectedEOF},

		// gRPC messages.
		{name: "grpc/flag0", spec: GRPCMessage,
			wire: cat(hx("00 00000005"), []byte("hello")), want: [][]byte{cat(hx("00 00000005"), []byte("hello"))},
			write: [][]byte{{0}, []byte("hello")}},
		{name: "grpc/flag1", spec: GRPCMessage,
			wire: cat(hx("01 00000003"), []byte("abc")), want: [][]byte{cat(hx("01 00000003"), []byte("abc"))},
			write: [][]byte{{1}, []byte("abc")}},
		{name: "grpc/empty", spec: GRPCMessage,
			wire: hx("00 00000000"), want: [][]byte{hx("00 00000000")}, write: [][]byte{{0}}},
		{name: "grpc/empty-stripped", spec: Spec{LengthOffset: 1, LengthSize: 4, Strip: 5},
			wire: hx("00 00000000"), want: [][]byte{{}}, write: [][]byte{{0}}},
		{name: "grpc/too-large", spec: GRPCMessage, wire: hx("00 00400001"), err: ErrFrameTooLarge},
		{name: "grpc/truncated-header", spec: GRPCMessage, wire: hx("00 0000"), err: io.ErrUnexpectedEOF},

		// MQTT Remaining Length.
		{name: "mqtt/0", spec: MQTT, wire: hx("c0 00"), want: [][]byte{hx("c0 00")}, write: [][]byte{hx("c0")}},
		{name: "mqtt/127", spec: MQTT, wire: cat(hx("30 7f"), rep(1, 127)), want: [][]byte{cat(hx("30 7f"), rep(1, 127))},
			write: [][]byte{hx("30"), rep(1, 127)}},
		{name: "mqtt/128", spec: MQTT, wire: cat(hx("30 8001"), rep(2, 128)), want: [][]byte{cat(hx("30 8001"), rep(2, 128))},
			write: [][]byte{hx("30"), rep(2, 128)}},
		{name: "mqtt/16383", spec: MQTT, wire: cat(hx("30 ff7f"), rep(3, 16383)), want: [][]byte{cat(hx("30 ff7f"), rep(3, 16383))},
			write: [][]byte{hx("30"), rep(3, 16383)}},
		{name: "mqtt/16384", spec: MQTT, wire: cat(hx("30 808001"), rep(4, 16384)), want: [][]byte{cat(hx("30 808001"), rep(4, 16384))},
			write: [][]byte{hx("30"), rep(4, 16384)}},
		{name: "mqtt/16384-strip", spec: Spec{LengthOffset: 1, Kind: MQTTVarint, Strip: StripThroughLength},
			wire: cat(hx("30 808001"), rep(4, 16384)), want: [][]byte{rep(4, 16384)}, write: [][]byte{hx("30"), rep(4, 16384)}},
		// 268435455 announces a 256 MiB packet: the header is accepted and
		// the stream then ends inside the frame.
		{name: "mqtt/268435455", spec: MQTT, wire: hx("30 ffffff7f 00"), err: io.ErrUnexpectedEOF},
		{name: "mqtt/5-byte-varint", spec: MQTT, wire: hx("30 ffffffff7f"), err: ErrInvalidLength},
		{name: "mqtt/4-continuations", spec: MQTT, wire: hx("30 ffffffff"), err: ErrInvalidLength},

		// memcached binary protocol GET "Hello" and its response (flags
		// 0xdeadbeef, value "World", CAS 1).
		{name: "memcached/get", spec: MemcachedBinary,
			wire:  cat(hx("80 00 0005 00 00 0000 00000005 00000000 0000000000000000"), []byte("Hello")),
			want:  [][]byte{cat(hx("80 00 0005 00 00 0000 00000005 00000000 0000000000000000"), []byte("Hello"))},
			write: [][]byte{hx("80 00 0005 00 00 0000"), hx("00000000 0000000000000000"), []byte("Hello")}},
		{name: "memcached/get-response", spec: MemcachedBinary,
			wire:  cat(hx("81 00 0000 04 00 0000 00000009 00000000 0000000000000001 deadbeef"), []byte("World")),
			want:  [][]byte{cat(hx("81 00 0000 04 00 0000 00000009 00000000 0000000000000001 deadbeef"), []byte("World"))},
			write: [][]byte{hx("81 00 0000 04 00 0000 00000000 0000000000000001 deadbeef"), []byte("World")}},

		// Apache Iggy: ping request (code 1), a request with a payload, and
		// responses.
		{name: "iggy/ping", spec: IggyRequest, wire: hx("04000000 01000000"), want: [][]byte{hx("04000000 01000000")},
			write: [][]byte{hx("01000000")}},
		{name: "iggy/request", spec: IggyRequest, wire: cat(hx("09000000 0a000000"), []byte("hello")),
			want: [][]byte{cat(hx("09000000 0a000000"), []byte("hello"))}, write: [][]byte{hx("0a000000"), []byte("hello")}},
		{name: "iggy/response-ok", spec: IggyResponse, wire: hx("00000000 00000000"), want: [][]byte{hx("00000000 00000000")},
			write: [][]byte{hx("00000000")}},
		{name: "iggy/response", spec: IggyResponse, wire: cat(hx("00000000 05000000"), []byte("hello")),
			want: [][]byte{cat(hx("00000000 05000000"), []byte("hello"))}, write: [][]byte{hx("00000000"), []byte("hello")}},

		// ALTS record: length 20 (LE), message type 6, 16-byte tag.
		{name: "alts/record", spec: ALTSRecord, wire: cat(hx("14000000 06000000"), tag),
			want: [][]byte{cat(hx("14000000 06000000"), tag)}, write: [][]byte{hx("06000000"), tag}},
		{name: "alts/too-large", spec: ALTSRecord, wire: hx("01001000"), err: ErrFrameTooLarge},

		// Other widths and orders.
		{name: "len1", spec: Spec{LengthSize: 1}, wire: hx("02 abcd"), want: [][]byte{hx("02 abcd")}, write: [][]byte{hx("abcd")}},
		{name: "len8-le", spec: Spec{LengthSize: 8, ByteOrder: leOrder}, wire: hx("0200000000000000 abcd"),
			want: [][]byte{hx("0200000000000000 abcd")}, write: [][]byte{hx("abcd")}},
		{name: "len8-huge", spec: Spec{LengthSize: 8}, wire: hx("ffffffffffffffff"), err: ErrFrameTooLarge},
		{name: "len8-signed-negative", spec: Spec{LengthSize: 8, Signed: true}, wire: hx("ffffffffffffffff"), err: ErrInvalidLength},
		{name: "len3-le", spec: Spec{LengthSize: 3, ByteOrder: leOrder}, wire: hx("020000 abcd"),
			want: [][]byte{hx("020000 abcd")}, write: [][]byte{hx("abcd")}},
		{name: "uvarint", spec: Spec{Kind: Uvarint, Strip: StripThroughLength}, wire: cat(hx("ac02"), rep(7, 300)),
			want: [][]byte{rep(7, 300)}, write: [][]byte{rep(7, 300)}},
		{name: "uvarint-overflow", spec: Spec{Kind: Uvarint}, wire: hx("ffffffffffffffffff02"), err: ErrInvalidLength},
		{name: "uvarint-huge", spec: Spec{Kind: Uvarint}, wire: hx("ffffffffffffffff7f"), err: ErrFrameTooLarge},
	}
	return fs
}

func wantErr(f fixture) error {
	if f.err == nil {
		return io.EOF
	}
	return f.err
}

// deliveries are the ways a fixture's bytes reach the Reader.
var deliveries = []struct {
	name     string
	readSize int
	conn     func(b []byte) io.Reader
}{
	{"whole", 0, func(b []byte) io.Reader { return &chunkConn{data: b} }},
	{"byte-at-a-time", 256, func(b []byte) io.Reader { return &chunkConn{data: b, chunks: []int{1}} }},
	{"splits-3-1-7", 64, func(b []byte) io.Reader { return &chunkConn{data: b, chunks: []int{3, 1, 7}} }},
	{"plain-io-reader-one-byte", 1024, func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
}

func TestFixtures(t *testing.T) {
	for _, f := range fixtures() {
		for _, d := range deliveries {
			for _, into := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/into=%v", f.name, d.name, into), func(t *testing.T) {
					pool := newDebugPool()
					r, err := NewReader(d.conn(f.wire), f.spec, WithPool(pool), WithReadSize(d.readSize))
					require.NoError(t, err)
					var got [][]byte
					if into {
						got, err = readAllInto(t, r)
					} else {
						got, err = readAll(t, r)
					}
					require.ErrorIs(t, err, wantErr(f))
					require.Equal(t, len(f.want), len(got))
					for i := range got {
						require.Equal(t, f.want[i], got[i])
					}
					require.Zero(t, pool.Stats().InUseBytes)
					// Sticky.
					_, err2 := r.ReadFrame()
					require.Equal(t, err, err2)
				})
			}
		}
	}
}

// TestFixturesCoalesced sends each valid fixture between copies of its
// neighbours with the same spec, all in one chunk, and then one byte at a time.
func TestFixturesCoalesced(t *testing.T) {
	fs := fixtures()
	for i, f := range fs {
		var stream []byte
		var want [][]byte
		add := func(g fixture) {
			stream = append(stream, g.wire...)
			want = append(want, g.want...)
		}
		// Neighbours with an identical spec and no error.
		var nb []fixture
		for _, j := range []int{i - 1, i + 1} {
			if j >= 0 && j < len(fs) && fs[j].err == nil && fmt.Sprint(fs[j].spec) == fmt.Sprint(f.spec) {
				nb = append(nb, fs[j])
			}
		}
		if f.err == nil {
			add(f)
			for _, g := range nb {
				add(g)
			}
			add(f)
		} else {
			for _, g := range nb {
				add(g)
			}
			stream = append(stream, f.wire...)
		}
		for _, chunks := range [][]int{nil, {1}, {len(stream) - 1, 1}} {
			t.Run(fmt.Sprintf("%s/chunks=%v", f.name, chunks), func(t *testing.T) {
				pool := newDebugPool()
				c := &chunkConn{data: stream, chunks: chunks}
				rs := max(len(stream), DefaultReadSize)
				if chunks != nil {
					rs = 512
				}
				r, err := NewReader(c, f.spec, WithPool(pool), WithReadSize(rs))
				require.NoError(t, err)
				got, err := readAll(t, r)
				require.ErrorIs(t, err, wantErr(f))
				require.Equal(t, want, got)
				require.Zero(t, pool.Stats().InUseBytes)
				if chunks == nil && f.err == nil {
					// One read brought everything: frames are parsed without further reads.
					require.Equal(t, 2, c.reads, "reads (one for data, one for EOF)")
				}
			})
		}
	}
}

// TestFixturesWriter checks that the Writer produces each fixture's bytes.
func TestFixturesWriter(t *testing.T) {
	for _, f := range fixtures() {
		if f.write == nil {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, f.spec, WithPool(newDebugPool()))
			require.NoError(t, err)
			require.NoError(t, w.WriteFrame(f.write...))
			require.Equal(t, f.wire, buf.Bytes())

			var vec bytesBuffersWriter
			w, err = NewWriter(&vec, f.spec)
			require.NoError(t, err)
			w.writev = true // exercise the vectored path on a plain writer
			w.copyMax = 0
			require.NoError(t, w.WriteFrame(f.write...))
			require.Equal(t, f.wire, vec.Bytes())

			buf.Reset()
			pool := newDebugPool()
			bw, err := NewBufferedWriter(&buf, f.spec, 64<<10, WithPool(pool))
			require.NoError(t, err)
			require.NoError(t, bw.WriteFrame(f.write...))
			require.NoError(t, bw.WriteFrame(f.write...))
			require.Zero(t, buf.Len())
			require.NoError(t, bw.Flush())
			require.Equal(t, cat(f.wire, f.wire), buf.Bytes())
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

type bytesBuffersWriter struct{ bytes.Buffer }
