package readyreader_test

import (
	"bufio"
	"bytes"
	"errors"
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

// chunkReader is an io.Reader that returns its chunks in order (a chunk
// longer than the caller's slice over several reads), then err forever;
// with errWithData the last chunk comes with err.
type chunkReader struct {
	chunks      [][]byte
	err         error
	errWithData bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, r.err
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	if len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
		if len(r.chunks) == 0 && r.errWithData {
			return n, r.err
		}
	}
	return n, nil
}

// onlyWriter hides every method but Write (bytes.Buffer's ReadFrom).
type onlyWriter struct{ io.Writer }

// FuzzBufioDifferential runs one sequence of operations on a bufio.Reader
// and on a Buffered (through readyreader.New's blocking fallback) reading
// the same chunked stream, and requires the same result from every call.
// Peek stays within Size() (Buffered gathers past it where bufio fails) and
// reads go through io.ReadFull (the two buffer differently, so a single
// Read may return fewer bytes from one than from the other). A slice is
// compared before the next call, against a debug pool that poisons every
// buffer it gets back: a slice released too early shows.
func FuzzBufioDifferential(f *testing.F) {
	f.Add([]byte("hello, world\nsecond line\r\nthird"), []byte{0x10, 3, 0x01, 0x22, 0x07, 0x38, 0x41, 0x52, 0x65, 0x7a, 0x8b, 0x93, 0xac, 0xb0})
	f.Add([]byte("日本語, unicode\xff\xfe and more"), []byte{0x31, 2, 5, 1, 0x33, 0x34, 0x43, 0x44, 0x23, 0x24, 0x33, 0x34})
	f.Add(bytes.Repeat([]byte("0123456789abcdef"), 20), []byte{0x8f, 9, 17, 0x7e, 0x7e, 0x8e, 0x9e, 0x5f, 0x6f, 0xc0})
	f.Add([]byte{}, []byte{0x00, 0x11, 0x32, 0x83, 0xb4})
	f.Fuzz(func(t *testing.T, data, ops []byte) {
		if len(ops) < 2 {
			return
		}
		size := 16 + int(ops[0]&0x3f) // bufio's smallest buffer is 16 bytes
		var endErr error = io.EOF
		if ops[1]&0x80 != 0 {
			endErr = errors.New("custom")
		}
		errWithData := ops[1]&0x40 != 0
		// The next bytes chunk the stream (no empty chunk: bufio returns
		// an empty read where Buffered retries it).
		var pieces [][]byte
		rest, i := data, 2
		for len(rest) > 0 {
			k := len(rest)
			if i < len(ops) {
				k = min(k, int(ops[i]%40)+1)
				i++
			}
			pieces = append(pieces, rest[:k])
			rest = rest[k:]
		}
		chunkCopy := func() [][]byte {
			c := make([][]byte, len(pieces))
			copy(c, pieces)
			return c
		}
		br := bufio.NewReaderSize(&chunkReader{chunks: chunkCopy(), err: endErr, errWithData: errWithData}, size)
		pool := debugPool()
		// bb reads through the blocking fallback, which takes a buffer of
		// the size asked for; bc through a Reader that returns buffers
		// sized to what arrived, as rawconn does.
		bb := readyreader.NewBuffered(readyreader.New(onlyReader{&chunkReader{chunks: chunkCopy(), err: endErr, errWithData: errWithData}}), size, pool)
		src := &chunks{err: endErr}
		for _, c := range pieces {
			src.c = append(src.c, string(c))
		}
		if errWithData && len(pieces) > 0 {
			src.errs = map[int]error{len(pieces) - 1: endErr}
		}
		bc := readyreader.NewBuffered(src, size, pool)
		defer func() {
			bb.Reset(nil)
			bc.Reset(nil)
			require.Zero(t, pool.Stats().InUseBytes)
		}()
		type result struct {
			s   string
			n   int
			ok  bool
			err error
		}
		run := func(r bufReader, op byte) result {
			n := int(op >> 4) // 0..15
			switch op & 0x0f {
			case 0, 1:
				p := make([]byte, n*7%(2*size+1))
				m, err := io.ReadFull(r, p)
				return result{s: string(p[:m]), n: m, err: err}
			case 2:
				c, err := r.ReadByte()
				return result{s: string(c), err: err}
			case 3:
				return result{err: r.UnreadByte()}
			case 4:
				c, m, err := r.ReadRune()
				return result{s: string(c), n: m, err: err}
			case 5:
				return result{err: r.UnreadRune()}
			case 6:
				p, err := r.Peek(n * size / 15)
				return result{s: string(p), err: err}
			case 7:
				m, err := r.Discard(n * 3)
				return result{n: m, err: err}
			case 8:
				p, err := r.ReadSlice("\n, e"[n%4])
				return result{s: string(p), err: err}
			case 9:
				line, isPrefix, err := r.ReadLine()
				return result{s: string(line), ok: isPrefix, n: boolInt(line == nil), err: err}
			case 10:
				p, err := r.ReadBytes("\n, e"[n%4])
				return result{s: string(p), err: err}
			case 11:
				s, err := r.ReadString("\n, e"[n%4])
				return result{s: s, err: err}
			case 12:
				var w bytes.Buffer
				m, err := r.WriteTo(onlyWriter{&w})
				return result{s: w.String(), n: int(m), err: err}
			default:
				m, err := r.Read(nil)
				return result{n: m, err: err}
			}
		}
		sliceOut := false // the last call returned a slice of the buffer
		for k, op := range ops[i:] {
			want := run(br, op)
			got := run(bb, op)
			require.Equal(t, want, got, "op %d (%#x)", k, op)
			got = run(bc, op)
			require.Equal(t, want, got, "op %d (%#x), sized buffers", k, op)
			switch kind := op & 0x0f; {
			case kind == 6 || kind == 8 || kind == 9:
				sliceOut = true
			case kind <= 1 && int(op>>4)*7%(2*size+1) == 0:
				// io.ReadFull of nothing does not call Read.
			default:
				sliceOut = false
			}
			if bb.Buffered() == 0 && bc.Buffered() == 0 && !sliceOut {
				require.Zero(t, pool.Stats().InUseBytes, "op %d (%#x): idle Buffered holds a buffer", k, op)
			}
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
