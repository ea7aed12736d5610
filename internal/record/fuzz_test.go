package record

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// refParse walks stream as testFormat records and returns the unsealed
// bodies of the complete valid records before the first problem, and how
// the stream ends: io.EOF at a record boundary, errTestHeader at a bad
// header, errTestTruncated inside a record.
func refParse(stream []byte) ([]byte, error) {
	var out []byte
	for {
		if len(stream) == 0 {
			return out, io.EOF
		}
		if len(stream) < testHeaderLen {
			return out, errTestTruncated
		}
		total, err := testFormat.Length(stream[:testHeaderLen])
		if err != nil {
			return out, err
		}
		if len(stream) < total {
			return out, errTestTruncated
		}
		b := bytes.Clone(stream[testHeaderLen:total])
		unseal(b)
		out = append(out, b...)
		stream = stream[total:]
	}
}

// FuzzReader feeds a Reader record streams (built from the input, or the
// input itself) in random chunks, through every way a readyreader may use
// the pool, and delivers in reads of a random size. The bodies delivered
// must be exactly those of an independent parse, the end must be reported
// as the parse says, nothing may stay borrowed from the pool, and no buffer
// may be sized by a header rather than by what arrived.
func FuzzReader(f *testing.F) {
	f.Add([]byte{1, 2, 3, 200, 255, 0, 7}, uint64(1), uint8(0), uint16(100), false, uint8(0))
	f.Add([]byte{255, 255}, uint64(2), uint8(1), uint16(1), false, uint8(5))
	f.Add([]byte{10, 20, 30}, uint64(3), uint8(2), uint16(7), false, uint8(1))
	f.Add(append(rec([]byte("hello")), 'R', 0xff, 0xff), uint64(4), uint8(0), uint16(3), true, uint8(0))
	f.Add([]byte{'X', 0, 0}, uint64(5), uint8(3), uint16(3), true, uint8(0))
	f.Add([]byte{'R', 0, 0, 'R', 0}, uint64(6), uint8(0), uint16(3), true, uint8(0))
	f.Add([]byte{}, uint64(7), uint8(4), uint16(3), true, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, mode uint8, deliver uint16, raw bool, trim uint8) {
		stream := data
		if !raw {
			stream = nil
			for i, b := range data {
				n := int(b) * 97 % 4000
				if b == 255 {
					n = maxTestBody
				}
				stream = append(stream, sealed(body(i, n))...)
				if len(stream) > 1<<18 {
					break
				}
			}
			stream = stream[:len(stream)-min(int(trim), len(stream))]
		}
		want, end := refParse(stream)
		rng := rand.New(rand.NewPCG(seed, seed>>7))
		var chunks [][]byte
		for rest := stream; len(rest) > 0; {
			n := 1 + rng.IntN([]int{8, 300, 5000, 70000}[rng.IntN(4)])
			n = min(n, len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		fm := feedMode(mode % 3) // sized, full, probe
		r, pool := newTestReader(&feed{chunks: chunks, mode: fm})
		got, err := drain(t, r, int(deliver)+1)
		if !bytes.Equal(want, got) {
			t.Fatalf("delivered %d bytes, want %d", len(got), len(want))
		}
		if !errors.Is(err, end) {
			t.Fatalf("ended with %v, want %v", err, end)
		}
		if n := pool.inUse(); n != 0 {
			t.Fatalf("%d pool bytes held after the end", n)
		}
		if fm != full && pool.largest > 2*len(stream)+minHold {
			t.Fatalf("a Get of %d bytes for a stream of %d", pool.largest, len(stream))
		}
	})
}

// FuzzHandshakeConn reads arbitrary bytes through a capturing HandshakeConn
// in reads of a given size: it returns a prefix of the input, consumes
// nothing it did not return, never reads past the end of a record unless
// the input is exhausted (or a header was refused), and captures exactly
// the complete records it returned.
func FuzzHandshakeConn(f *testing.F) {
	f.Add([]byte{22, 3, 3, 0, 2, 'h', 'i', 'x', 'y'}, uint8(3))
	f.Add([]byte{23, 3, 3, 0xff, 0xff, 1, 2, 3}, uint8(1))
	f.Add([]byte{23, 3}, uint8(7))
	f.Add([]byte("000"), uint8(1))
	f.Add([]byte{}, uint8(38))
	f.Add(append(tlsRec(22, "hello"), tlsRec(23, "")...), uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, size uint8) {
		src := bytes.NewReader(data)
		h := NewHandshakeConn(&memConn{r: src}, true)
		buf := make([]byte, int(size)+1)
		var got []byte
		for {
			n, err := h.Read(buf)
			got = append(got, buf[:n]...)
			if n == 0 {
				if err == nil {
					t.Fatal("Read returned 0, nil")
				}
				break
			}
		}
		if !bytes.Equal(data[:len(got)], got) {
			t.Fatal("returned bytes are not a prefix of the input")
		}
		if len(data)-len(got) != src.Len() {
			t.Fatalf("consumed %d bytes, returned %d", len(data)-src.Len(), len(got))
		}
		var recs [][]byte
		off := 0
		for off+TLSHeaderLen <= len(got) {
			l := int(got[off+3])<<8 | int(got[off+4])
			if l > MaxTLSRecordLen {
				// Handed over (crypto/tls refuses it), never completed,
				// never captured as a record.
				if off+TLSHeaderLen != len(got) {
					t.Fatal("read past an oversized header")
				}
				off = len(got)
				break
			}
			if off+TLSHeaderLen+l > len(got) {
				break
			}
			recs = append(recs, got[off:off+TLSHeaderLen+l])
			off += TLSHeaderLen + l
		}
		if off < len(got) && src.Len() > 0 {
			t.Fatal("stopped inside a record with input left")
		}
		capt := h.ReadRecords()
		if len(capt) != len(recs) {
			t.Fatalf("captured %d records, read %d", len(capt), len(recs))
		}
		for i := range recs {
			if !bytes.Equal(capt[i], recs[i]) {
				t.Fatalf("captured record %d differs", i)
			}
		}
	})
}
