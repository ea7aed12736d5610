package readyreader_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/readyreader"
)

// FuzzBuffered drives a Buffered with a sequence of operations over a
// stream delivered in fuzzer-chosen chunks, and checks every result against
// the plain stream, plus the invariant that a pool buffer is held exactly
// while bytes are buffered. The debug pool panics on double Put.
func FuzzBuffered(f *testing.F) {
	f.Add([]byte("hello, world"), []byte{3, 1, 0x45, 0x82, 0xc3, 0x07})
	f.Add(bytes.Repeat([]byte("0123456789"), 50), []byte{200, 7, 0x4f, 0x20, 0x90, 0xff, 0x01})
	f.Add([]byte{}, []byte{0x40, 0x80, 0xc0, 0x00})
	f.Fuzz(func(t *testing.T, data, ops []byte) {
		if len(ops) == 0 {
			return
		}
		// ops[0] picks the Buffered size, the next bytes chunk the stream.
		size := int(ops[0]%64) + 1
		var chunkList []string
		rest := data
		for i := 1; len(rest) > 0; i++ {
			k := len(rest)
			if i < len(ops) {
				k = min(k, int(ops[i]%32)+1)
			}
			chunkList = append(chunkList, string(rest[:k]))
			rest = rest[k:]
		}
		pool := debugPool()
		b := readyreader.NewBuffered(&chunks{c: chunkList}, size, pool)
		pos := 0 // bytes of data consumed
		for _, o := range ops {
			n := int(o & 0x3f)
			switch o >> 6 {
			case 0: // Read
				p := make([]byte, n)
				got, err := b.Read(p)
				if n > 0 && pos < len(data) {
					require.Positive(t, got)
				}
				require.Equal(t, data[pos:pos+got], p[:got])
				pos += got
				if got == 0 && n > 0 {
					require.ErrorIs(t, err, io.EOF)
				}
			case 1: // Peek
				p, err := b.Peek(n)
				want := data[pos:min(pos+n, len(data))]
				require.Equal(t, string(want), string(p))
				if len(want) < n {
					require.ErrorIs(t, err, io.EOF)
				} else {
					require.NoError(t, err)
				}
			case 2: // Discard
				got, err := b.Discard(n)
				require.Equal(t, min(n, len(data)-pos), got)
				if got < n {
					require.ErrorIs(t, err, io.EOF)
				}
				pos += got
			case 3: // ReadByte
				c, err := b.ReadByte()
				if pos < len(data) {
					require.NoError(t, err)
					require.Equal(t, data[pos], c)
					pos++
				} else {
					require.ErrorIs(t, err, io.EOF)
				}
			}
			if b.Buffered() == 0 {
				require.Zero(t, pool.Stats().InUseBytes)
			}
		}
		b.Reset(nil)
		require.Zero(t, pool.Stats().InUseBytes)
	})
}
