package readyreader_test

// These tests run the table cases and checks of the standard library's
// bufio reader tests (bufio_test.go) against both a *bufio.Reader and a
// *readyreader.Buffered, through the method set they share, and expect the
// same results, except where Buffered documents a difference (Peek past
// Size, a Read that gets (0, nil) from below, a Reader reporting a bad
// count). Every Buffered takes its buffers from a debug pool, which poisons
// released memory, and must have given all of them back at the end.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/readyreader"
)

// bufReader is the method set Buffered shares with bufio.Reader.
type bufReader interface {
	io.Reader
	io.ByteScanner
	io.RuneScanner
	io.WriterTo
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	Buffered() int
	Size() int
	ReadSlice(delim byte) ([]byte, error)
	ReadBytes(delim byte) ([]byte, error)
	ReadString(delim byte) (string, error)
	ReadLine() (line []byte, isPrefix bool, err error)
}

var (
	_ bufReader = (*bufio.Reader)(nil)
	_ bufReader = (*readyreader.Buffered)(nil)
)

// onlyReader hides every method but Read.
type onlyReader struct{ io.Reader }

// impl builds one of the two readers over r with bufio.NewReaderSize's
// size rules (at least 16 bytes).
type impl struct {
	name     string
	buffered bool
	new      func(t *testing.T, r io.Reader, size int) bufReader
}

var impls = []impl{
	{name: "bufio", new: func(_ *testing.T, r io.Reader, size int) bufReader { return bufio.NewReaderSize(r, size) }},
	{name: "Buffered", buffered: true, new: func(t *testing.T, r io.Reader, size int) bufReader {
		return newCheckedBuffered(t, r, bufio.NewReaderSize(nil, size).Size(), debugPool())
	}},
}

// newCheckedBuffered returns a Buffered over r (through readyreader.New's
// blocking fallback) whose pool must be balanced when the test ends.
func newCheckedBuffered(t *testing.T, r io.Reader, size int, pool *bufferpool.Tiered) *readyreader.Buffered {
	b := readyreader.NewBuffered(readyreader.New(onlyReader{r}), size, pool)
	t.Cleanup(func() {
		b.Reset(nil)
		assert.Zero(t, pool.Stats().InUseBytes, "pool buffers not given back")
	})
	return b
}

func forEachImpl(t *testing.T, f func(t *testing.T, im impl)) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) { f(t, im) })
	}
}

type rot13Reader struct{ r io.Reader }

func (r rot13Reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	for i := range p[:n] {
		c := p[i] | 0x20
		if 'a' <= c && c <= 'm' {
			p[i] += 13
		} else if 'n' <= c && c <= 'z' {
			p[i] -= 13
		}
	}
	return n, err
}

// readBytes accumulates with ReadByte, skipping iotest's timeouts.
func readBytes(t *testing.T, b bufReader) string {
	var s []byte
	for {
		c, err := b.ReadByte()
		if err == io.EOF {
			return string(s)
		}
		if err == nil {
			s = append(s, c)
		} else if err != iotest.ErrTimeout {
			t.Fatalf("ReadByte: %v", err)
		}
	}
}

// readLines accumulates with ReadString('\n').
func readLines(t *testing.T, b bufReader) string {
	var s string
	for {
		s1, err := b.ReadString('\n')
		if err == io.EOF {
			return s + s1
		}
		if err != nil && err != iotest.ErrTimeout {
			t.Fatalf("ReadString: %v", err)
		}
		s += s1
	}
}

// reads accumulates with Read(p[:m]).
func reads(b bufReader, m int) string {
	var s []byte
	p := make([]byte, m)
	for {
		n, err := b.Read(p)
		s = append(s, p[:n]...)
		if err == io.EOF {
			return string(s)
		}
	}
}

func TestBufioReaderSimple(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		require.Equal(t, "hello world", readBytes(t, im.new(t, strings.NewReader("hello world"), 4096)))
		require.Equal(t, "uryyb jbeyq", readBytes(t, im.new(t, rot13Reader{strings.NewReader("hello world")}, 4096)))
	})
}

// TestBufioReader is bufio's TestReader: 31 texts, read through five kinds
// of io.Reader, with eight ways of reading, at ten buffer sizes.
func TestBufioReader(t *testing.T) {
	var texts [31]string
	str, all := "", ""
	for i := range len(texts) - 1 {
		texts[i] = str + "\n"
		all += texts[i]
		str += string(rune(i%26 + 'a'))
	}
	texts[len(texts)-1] = all
	readMakers := []struct {
		name string
		fn   func(io.Reader) io.Reader
	}{
		{"full", func(r io.Reader) io.Reader { return r }},
		{"byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data+err", iotest.DataErrReader},
		{"timeout", iotest.TimeoutReader},
	}
	bufReaders := []struct {
		name string
		fn   func(*testing.T, bufReader) string
	}{
		{"1", func(_ *testing.T, b bufReader) string { return reads(b, 1) }},
		{"2", func(_ *testing.T, b bufReader) string { return reads(b, 2) }},
		{"3", func(_ *testing.T, b bufReader) string { return reads(b, 3) }},
		{"4", func(_ *testing.T, b bufReader) string { return reads(b, 4) }},
		{"5", func(_ *testing.T, b bufReader) string { return reads(b, 5) }},
		{"7", func(_ *testing.T, b bufReader) string { return reads(b, 7) }},
		{"bytes", readBytes},
		{"lines", readLines},
	}
	bufSizes := []int{0, 16, 23, 32, 46, 64, 93, 128, 1024, 4096}
	forEachImpl(t, func(t *testing.T, im impl) {
		pool := debugPool()
		for _, text := range texts {
			for _, rm := range readMakers {
				for _, br := range bufReaders {
					for _, size := range bufSizes {
						var b bufReader
						if im.buffered {
							b = readyreader.NewBuffered(readyreader.New(onlyReader{rm.fn(strings.NewReader(text))}),
								bufio.NewReaderSize(nil, size).Size(), pool)
						} else {
							b = im.new(t, rm.fn(strings.NewReader(text)), size)
						}
						if got := br.fn(t, b); got != text {
							t.Fatalf("reader=%s fn=%s bufsize=%d want=%q got=%q", rm.name, br.name, size, text, got)
						}
						if bb, ok := b.(*readyreader.Buffered); ok {
							bb.Reset(nil)
							require.Zero(t, pool.Stats().InUseBytes)
						}
					}
				}
			}
		}
	})
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestBufioZeroReader(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		_, err := im.new(t, zeroReader{}, 4096).ReadByte()
		require.ErrorIs(t, err, io.ErrNoProgress)
	})
}

// segmentsReader delivers one segment per Read.
type segmentsReader struct {
	data []string
	step int
}

func (r *segmentsReader) Read(p []byte) (n int, err error) {
	if r.step < len(r.data) {
		n = copy(p, r.data[r.step])
		r.step++
		return n, nil
	}
	return 0, io.EOF
}

func TestBufioReadRune(t *testing.T) {
	for _, segments := range [][]string{
		{},
		{""},
		{"日", "本語"},
		{"\u65e5", "\u672c", "\u8a9e"},
		{"\U000065e5", "\U0000672c", "\U00008a9e"},
		{"\xe6", "\x97\xa5\xe6", "\x9c\xac\xe8\xaa\x9e"},
		{"Hello", ", ", "World", "!"},
		{"Hello", ", ", "", "World", "!"},
	} {
		forEachImpl(t, func(t *testing.T, im impl) {
			b := im.new(t, &segmentsReader{data: segments}, 4096)
			var got string
			for {
				r, _, err := b.ReadRune()
				if err != nil {
					require.ErrorIs(t, err, io.EOF)
					break
				}
				got += string(r)
			}
			require.Equal(t, strings.Join(segments, ""), got)
		})
	}
}

func TestBufioUnreadRune(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		segments := []string{"Hello, world:", "日本語"}
		b := im.new(t, &segmentsReader{data: segments}, 4096)
		var got string
		for {
			r1, _, err := b.ReadRune()
			if err != nil {
				require.ErrorIs(t, err, io.EOF)
				break
			}
			got += string(r1)
			require.NoError(t, b.UnreadRune())
			r2, _, err := b.ReadRune()
			require.NoError(t, err)
			require.Equal(t, r1, r2)
		}
		require.Equal(t, strings.Join(segments, ""), got)
	})
}

func TestBufioNoUnreadAfter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		read  func(bufReader)
		op    func(bufReader)
		check func(bufReader) error
	}{
		{"rune after Peek", func(b bufReader) { b.ReadRune() }, func(b bufReader) { b.Peek(1) }, bufReader.UnreadRune},
		{"byte after Peek", func(b bufReader) { b.ReadByte() }, func(b bufReader) { b.Peek(1) }, bufReader.UnreadByte},
		{"rune after Discard", func(b bufReader) { b.ReadRune() }, func(b bufReader) { b.Discard(1) }, bufReader.UnreadRune},
		{"byte after Discard", func(b bufReader) { b.ReadByte() }, func(b bufReader) { b.Discard(1) }, bufReader.UnreadByte},
		{"rune after WriteTo", func(bufReader) {}, func(b bufReader) { b.WriteTo(io.Discard) }, bufReader.UnreadRune},
		{"byte after WriteTo", func(bufReader) {}, func(b bufReader) { b.WriteTo(io.Discard) }, bufReader.UnreadByte},
	} {
		forEachImpl(t, func(t *testing.T, im impl) {
			b := im.new(t, strings.NewReader("example"), 4096)
			tc.read(b)
			tc.op(b)
			require.Error(t, tc.check(b), tc.name)
		})
	}
}

func TestBufioUnreadByte(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		segments := []string{"Hello, ", "world"}
		b := im.new(t, &segmentsReader{data: segments}, 4096)
		var got string
		for {
			b1, err := b.ReadByte()
			if err != nil {
				require.ErrorIs(t, err, io.EOF)
				break
			}
			got += string(b1)
			require.NoError(t, b.UnreadByte())
			b2, err := b.ReadByte()
			require.NoError(t, err)
			require.Equal(t, b1, b2)
		}
		require.Equal(t, strings.Join(segments, ""), got)
	})
}

func TestBufioUnreadByteMultiple(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		segments := []string{"Hello, ", "world"}
		data := strings.Join(segments, "")
		for n := 0; n <= len(data); n++ {
			b := im.new(t, &segmentsReader{data: segments}, 4096)
			for i := range n {
				c, err := b.ReadByte()
				require.NoError(t, err)
				require.Equal(t, data[i], c)
			}
			if n > 0 {
				require.NoError(t, b.UnreadByte(), "n = %d", n)
			}
			require.ErrorIs(t, b.UnreadByte(), bufio.ErrInvalidUnreadByte, "n = %d", n)
		}
	})
}

func TestBufioUnreadByteOthers(t *testing.T) {
	readers := []func(bufReader, byte) ([]byte, error){
		bufReader.ReadBytes,
		bufReader.ReadSlice,
		func(b bufReader, delim byte) ([]byte, error) {
			s, err := b.ReadString(delim)
			return []byte(s), err
		},
	}
	forEachImpl(t, func(t *testing.T, im impl) {
		for rno, read := range readers {
			const n = 10
			b := im.new(t, strings.NewReader(strings.Repeat("abcdefg", n)), 16)
			readTo := func(delim byte, want string) {
				data, err := read(b, delim)
				require.NoError(t, err, "#%d", rno)
				require.Equal(t, want, string(data), "#%d", rno)
			}
			for range n {
				readTo('d', "abcd")
				for range 3 {
					require.NoError(t, b.UnreadByte(), "#%d", rno)
					readTo('d', "d")
				}
				readTo('g', "efg")
			}
			_, err := b.ReadByte()
			require.ErrorIs(t, err, io.EOF)
		}
	})
}

func TestBufioUnreadRuneError(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		buf := make([]byte, 3) // every rune here is 3 bytes long
		b := im.new(t, &segmentsReader{data: []string{"日本語日本語日本語"}}, 4096)
		require.Error(t, b.UnreadRune(), "fresh reader")
		_, _, err := b.ReadRune()
		require.NoError(t, err)
		require.NoError(t, b.UnreadRune())
		require.Error(t, b.UnreadRune(), "after UnreadRune")
		_, _, err = b.ReadRune()
		require.NoError(t, err)
		_, err = b.Read(buf)
		require.NoError(t, err)
		require.Error(t, b.UnreadRune(), "after Read")
		_, _, err = b.ReadRune()
		require.NoError(t, err)
		for range buf {
			_, err = b.ReadByte()
			require.NoError(t, err)
		}
		require.Error(t, b.UnreadRune(), "after ReadByte")
		_, _, err = b.ReadRune()
		require.NoError(t, err)
		_, err = b.ReadByte()
		require.NoError(t, err)
		require.NoError(t, b.UnreadByte())
		require.Error(t, b.UnreadRune(), "after UnreadByte")
		_, _, err = b.ReadRune()
		require.NoError(t, err)
		_, err = b.ReadSlice(0)
		require.ErrorIs(t, err, io.EOF)
		require.Error(t, b.UnreadRune(), "after ReadSlice")
	})
}

func TestBufioUnreadRuneAtEOF(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		b := im.new(t, strings.NewReader("x"), 4096)
		b.ReadRune()
		b.ReadRune()
		b.UnreadRune()
		_, _, err := b.ReadRune()
		require.ErrorIs(t, err, io.EOF)
	})
}

func TestBufioReadWriteRune(t *testing.T) {
	const nRune = 1000
	var src bytes.Buffer
	for r := rune(0); r < nRune; r++ {
		src.WriteRune(r)
	}
	forEachImpl(t, func(t *testing.T, im impl) {
		b := im.new(t, bytes.NewReader(src.Bytes()), 4096)
		for r := rune(0); r < nRune; r++ {
			got, size, err := b.ReadRune()
			require.NoError(t, err)
			require.Equal(t, r, got)
			require.Equal(t, utf8.RuneLen(r), size)
		}
	})
}

func TestBufioBufferFull(t *testing.T) {
	const long = "And now, hello, world! It is the time for all good men to come to the aid of their party"
	forEachImpl(t, func(t *testing.T, im impl) {
		b := im.new(t, strings.NewReader(long), 16)
		line, err := b.ReadSlice('!')
		require.Equal(t, "And now, hello, ", string(line))
		require.ErrorIs(t, err, bufio.ErrBufferFull)
		line, err = b.ReadSlice('!')
		require.Equal(t, "world!", string(line))
		require.NoError(t, err)
	})
}

type dataAndEOFReader string

func (r dataAndEOFReader) Read(p []byte) (int, error) { return copy(p, r), io.EOF }

func TestBufioPeek(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		p := make([]byte, 10)
		b := im.new(t, strings.NewReader("abcdefghijklmnop"), 16)
		peek := func(n int, want string, wantErr error) {
			t.Helper()
			s, err := b.Peek(n)
			require.Equal(t, want, string(s), "Peek(%d)", n)
			if wantErr == nil {
				require.NoError(t, err, "Peek(%d)", n)
			} else {
				require.ErrorIs(t, err, wantErr, "Peek(%d)", n)
			}
		}
		read := func(n int, want string) {
			t.Helper()
			got, err := b.Read(p[:n])
			require.NoError(t, err)
			require.Equal(t, want, string(p[:got]))
		}
		peek(1, "a", nil)
		peek(4, "abcd", nil)
		_, err := b.Peek(-1)
		require.ErrorIs(t, err, bufio.ErrNegativeCount)
		if im.buffered {
			// Buffered's documented difference: Peek past Size gathers.
			peek(32, "abcdefghijklmnop", io.EOF)
		} else {
			peek(32, "abcdefghijklmnop", bufio.ErrBufferFull)
		}
		read(3, "abc")
		peek(1, "d", nil)
		peek(2, "de", nil)
		read(3, "def")
		peek(4, "ghij", nil)
		read(10, "ghijklmnop")
		peek(0, "", nil)
		peek(1, "", io.EOF)

		// Issue 3022: no reader's error on a successful Peek.
		b = im.new(t, dataAndEOFReader("abcd"), 32)
		peek(2, "ab", nil)
		peek(4, "abcd", nil)
		n, err := b.Read(p[:5])
		require.NoError(t, err)
		require.Equal(t, "abcd", string(p[:n]))
		n, err = b.Read(p[:1])
		require.Zero(t, n)
		require.ErrorIs(t, err, io.EOF)
	})
}

func TestBufioPeekThenUnreadRune(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		b := im.new(t, strings.NewReader("x"), 4096)
		b.ReadRune()
		b.Peek(1)
		require.ErrorIs(t, b.UnreadRune(), bufio.ErrInvalidUnreadRune)
		_, _, err := b.ReadRune() // used to panic in bufio
		require.ErrorIs(t, err, io.EOF)
	})
}

// strideReader returns reads of at most stride bytes, and io.EOF with the
// last one.
type strideReader struct {
	data   []byte
	stride int
}

func (r *strideReader) Read(p []byte) (int, error) {
	n := min(r.stride, len(r.data), len(p))
	copy(p, r.data)
	r.data = r.data[n:]
	if len(r.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}

func TestBufioReadLine(t *testing.T) {
	output := "0123456789abcdefghijklmnopqrstuvwxy"
	for _, input := range []string{
		"012\n345\n678\n9ab\ncde\nfgh\nijk\nlmn\nopq\nrst\nuvw\nxy",
		"012\r\n345\r\n678\r\n9ab\r\ncde\r\nfgh\r\nijk\r\nlmn\r\nopq\r\nrst\r\nuvw\r\nxy\r\n\n\r\n",
	} {
		forEachImpl(t, func(t *testing.T, im impl) {
			b := im.new(t, &strideReader{data: []byte(input), stride: 1}, len(input)+1)
			done := 0
			for {
				line, isPrefix, err := b.ReadLine()
				require.False(t, len(line) > 0 && err != nil, "line and error")
				require.False(t, isPrefix)
				if err != nil {
					require.ErrorIs(t, err, io.EOF)
					break
				}
				require.Equal(t, output[done:done+len(line)], string(line))
				done += len(line)
			}
			require.Equal(t, len(output), done)
		})
	}
}

func TestBufioLineTooLong(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		var data []byte
		for i := range 16 * 5 / 2 {
			data = append(data, '0'+byte(i%10))
		}
		b := im.new(t, bytes.NewReader(data), 16)
		for _, want := range []struct {
			n        int
			isPrefix bool
		}{{16, true}, {16, true}, {8, false}} {
			line, isPrefix, err := b.ReadLine()
			require.NoError(t, err)
			require.Equal(t, want.isPrefix, isPrefix)
			require.Equal(t, string(data[:want.n]), string(line))
			data = data[want.n:]
		}
		_, isPrefix, err := b.ReadLine()
		require.False(t, isPrefix)
		require.Error(t, err)
	})
}

func TestBufioReadAfterLines(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		line1 := "this is line1"
		rest := "this is line2\nthis is line 3\n"
		b := im.new(t, strings.NewReader(line1+"\n"+rest), len(line1)+len(rest)/2)
		line, isPrefix, err := b.ReadLine()
		require.NoError(t, err)
		require.False(t, isPrefix)
		require.Equal(t, line1, string(line))
		var out strings.Builder
		n, err := io.Copy(&out, b)
		require.NoError(t, err)
		require.Equal(t, int64(len(rest)), n)
		require.Equal(t, rest, out.String())
	})
}

func TestBufioReadEmptyBuffer(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		_, _, err := im.new(t, new(bytes.Buffer), 16).ReadLine()
		require.ErrorIs(t, err, io.EOF)
	})
}

func TestBufioLinesAfterRead(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		b := im.new(t, strings.NewReader("foo"), 16)
		_, err := io.ReadAll(b)
		require.NoError(t, err)
		_, _, err = b.ReadLine()
		require.ErrorIs(t, err, io.EOF)
	})
}

func TestBufioReadLineNonNilLineOrError(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		b := im.new(t, strings.NewReader("line 1\n"), 4096)
		for i := range 2 {
			l, _, err := b.ReadLine()
			require.False(t, l != nil && err != nil, "line %d: %q and %v", i+1, l, err)
		}
	})
}

func TestBufioReadLineNewlines(t *testing.T) {
	type result struct {
		line     string
		isPrefix bool
		err      error
		nilLine  bool
	}
	for _, tc := range []struct {
		input  string
		expect []result
	}{
		{"012345678901234\r\n012345678901234\r\n", []result{
			{"012345678901234", true, nil, false},
			{"", false, nil, false},
			{"012345678901234", true, nil, false},
			{"", false, nil, false},
			{"", false, io.EOF, true},
		}},
		{"0123456789012345\r012345678901234\r", []result{
			{"0123456789012345", true, nil, false},
			{"\r012345678901234", true, nil, false},
			{"\r", false, nil, false},
			{"", false, io.EOF, true},
		}},
	} {
		forEachImpl(t, func(t *testing.T, im impl) {
			b := im.new(t, strings.NewReader(tc.input), 16)
			for i, e := range tc.expect {
				line, isPrefix, err := b.ReadLine()
				require.Equal(t, e.line, string(line), "call %d", i)
				require.Equal(t, e.nilLine, line == nil, "call %d: nil line", i)
				require.Equal(t, e.isPrefix, isPrefix, "call %d", i)
				require.Equal(t, e.err, err, "call %d", i)
			}
		})
	}
}

func createTestInput(n int) []byte {
	input := make([]byte, n)
	for i := range input {
		input[i] = byte(i % 251)
		if i%101 == 0 {
			input[i] ^= byte(i / 101)
		}
	}
	return input
}

func TestBufioReaderWriteTo(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		input := createTestInput(8192)
		b := im.new(t, onlyReader{bytes.NewReader(input)}, 4096)
		var w bytes.Buffer
		n, err := b.WriteTo(&w)
		require.NoError(t, err)
		require.Equal(t, int64(len(input)), n)
		require.Equal(t, input, w.Bytes())
	})
}

type errorWriterTo struct {
	rn, wn     int
	rerr, werr error
}

func (r errorWriterTo) Read(p []byte) (int, error)  { return len(p) * r.rn, r.rerr }
func (w errorWriterTo) Write(p []byte) (int, error) { return len(p) * w.wn, w.werr }

func TestBufioReaderWriteToErrors(t *testing.T) {
	for i, tc := range []struct {
		rw   errorWriterTo
		want error
	}{
		{errorWriterTo{1, 0, nil, io.ErrClosedPipe}, io.ErrClosedPipe},
		{errorWriterTo{0, 1, io.ErrClosedPipe, nil}, io.ErrClosedPipe},
		{errorWriterTo{0, 0, io.ErrUnexpectedEOF, io.ErrClosedPipe}, io.ErrUnexpectedEOF},
		{errorWriterTo{0, 1, io.EOF, nil}, nil},
	} {
		forEachImpl(t, func(t *testing.T, im impl) {
			_, err := im.new(t, tc.rw, 4096).WriteTo(tc.rw)
			require.Equal(t, tc.want, err, "case %d", i)
		})
	}
}

type negativeReader struct{}

func (negativeReader) Read([]byte) (int, error) { return -1, nil }

func TestBufioNegativeRead(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		b := im.new(t, negativeReader{}, 4096)
		if !im.buffered {
			require.PanicsWithError(t, "bufio: reader returned negative count from Read", func() { b.Read(make([]byte, 100)) })
			return
		}
		// Buffered reports a bad count as an error rather than panicking.
		_, err := b.Read(make([]byte, 100))
		require.ErrorContains(t, err, "invalid count")
	})
}

var errFake = errors.New("fake error")

type errorThenGoodReader struct {
	didErr bool
	nread  int
}

func (r *errorThenGoodReader) Read(p []byte) (int, error) {
	r.nread++
	if !r.didErr {
		r.didErr = true
		return 0, errFake
	}
	return len(p), nil
}

func TestBufioReaderClearError(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		r := &errorThenGoodReader{}
		b := im.new(t, r, 4096)
		buf := make([]byte, 1)
		_, err := b.Read(nil)
		require.NoError(t, err)
		_, err = b.Read(buf)
		require.Equal(t, errFake, err)
		_, err = b.Read(nil)
		require.NoError(t, err)
		_, err = b.Read(buf)
		require.NoError(t, err)
		require.Equal(t, 2, r.nread)
	})
}

type emptyThenNonEmptyReader struct {
	r io.Reader
	n int
}

func (r *emptyThenNonEmptyReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return r.r.Read(p)
	}
	r.n--
	return 0, nil
}

func TestBufioReadZero(t *testing.T) {
	for _, size := range []int{100, 2} {
		forEachImpl(t, func(t *testing.T, im impl) {
			r := io.MultiReader(strings.NewReader("abc"), &emptyThenNonEmptyReader{r: strings.NewReader("def"), n: 1})
			b := im.new(t, r, size)
			want := func(s string, wantErr error) {
				t.Helper()
				p := make([]byte, 50)
				n, err := b.Read(p)
				require.Equal(t, wantErr, err)
				require.Equal(t, s, string(p[:n]))
			}
			want("abc", nil)
			if !im.buffered {
				// bufio passes an empty read on; Buffered retries it (up
				// to 100 times) and returns 0 only with an error.
				want("", nil)
			}
			want("def", nil)
			want("", io.EOF)
		})
	}
}

func TestBufioReaderReset(t *testing.T) {
	pool := debugPool()
	all := func(b *readyreader.Buffered, want string) {
		t.Helper()
		got, err := io.ReadAll(b)
		require.NoError(t, err)
		require.Equal(t, want, string(got))
	}
	src := func(s string) readyreader.Reader { return readyreader.New(onlyReader{strings.NewReader(s)}) }
	b := readyreader.NewBuffered(src("foo foo"), 0, pool)
	buf := make([]byte, 3)
	b.Read(buf)
	require.Equal(t, "foo", string(buf))
	b.Reset(src("bar bar"))
	all(b, "bar bar")

	*b = readyreader.Buffered{} // a zero Buffered
	b.Reset(src("bar bar"))
	all(b, "bar bar")

	// A Buffered reading from a Buffered, and Reset to one.
	b.Reset(src("recur"))
	b2 := readyreader.NewBuffered(b, 16, pool)
	all(b2, "recur")
	b.Reset(src("recur2"))
	b2.Reset(b)
	all(b2, "recur2")
	require.Zero(t, pool.Stats().InUseBytes)
}

type scriptedReader []func(p []byte) (int, error)

func (sr *scriptedReader) Read(p []byte) (int, error) {
	if len(*sr) == 0 {
		panic("too many Read calls on scripted Reader")
	}
	step := (*sr)[0]
	*sr = (*sr)[1:]
	return step(p)
}

func newScriptedReader(steps ...func(p []byte) (int, error)) io.Reader {
	sr := scriptedReader(steps)
	return &sr
}

func TestBufioReaderDiscard(t *testing.T) {
	fiveThenError := func(p []byte) (int, error) {
		if len(p) < 5 {
			panic("unexpected small read")
		}
		return 5, errors.New("5-then-error")
	}
	for _, tc := range []struct {
		name         string
		r            func() io.Reader
		bufSize      int
		peekSize     int
		n            int
		want         int
		wantErr      error
		wantBuffered int
	}{
		{name: "normal case", r: func() io.Reader { return strings.NewReader("abcdefghijklmnopqrstuvwxyz") }, peekSize: 16, n: 6, want: 6, wantBuffered: 10},
		{name: "discard causing read", r: func() io.Reader { return strings.NewReader("abcdefghijklmnopqrstuvwxyz") }, n: 6, want: 6, wantBuffered: 10},
		{name: "discard all without peek", r: func() io.Reader { return strings.NewReader("abcdefghijklmnopqrstuvwxyz") }, n: 26, want: 26},
		{name: "discard more than end", r: func() io.Reader { return strings.NewReader("abcdefghijklmnopqrstuvwxyz") }, n: 27, want: 26, wantErr: io.EOF},
		{name: "fill error, discard less", r: func() io.Reader { return newScriptedReader(fiveThenError) }, n: 4, want: 4, wantBuffered: 1},
		{name: "fill error, discard equal", r: func() io.Reader { return newScriptedReader(fiveThenError) }, n: 5, want: 5},
		{name: "fill error, discard more", r: func() io.Reader { return newScriptedReader(fiveThenError) }, n: 6, want: 5, wantErr: errors.New("5-then-error")},
		{name: "discard zero", r: func() io.Reader { return newScriptedReader() }, n: 0},
		{name: "discard negative", r: func() io.Reader { return newScriptedReader() }, n: -1, wantErr: bufio.ErrNegativeCount},
	} {
		forEachImpl(t, func(t *testing.T, im impl) {
			b := im.new(t, tc.r(), tc.bufSize)
			if tc.peekSize > 0 {
				p, err := b.Peek(tc.peekSize)
				require.NoError(t, err, tc.name)
				require.Len(t, p, tc.peekSize, tc.name)
			}
			n, err := b.Discard(tc.n)
			require.Equal(t, tc.want, n, tc.name)
			require.Equal(t, fmt.Sprint(tc.wantErr), fmt.Sprint(err), tc.name)
			require.Equal(t, tc.wantBuffered, b.Buffered(), tc.name)
		})
	}
}

func TestBufioReaderSize(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		require.Equal(t, 16, im.new(t, strings.NewReader(""), 0).Size())
		require.Equal(t, 1234, im.new(t, strings.NewReader(""), 1234).Size())
	})
	require.Equal(t, bufio.NewReader(nil).Size(), readyreader.NewBuffered(emptyReader{}, 0, nil).Size())
}

// eofReader returns io.EOF with the read that takes the last byte.
type eofReader struct{ buf []byte }

func (r *eofReader) Read(p []byte) (int, error) {
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	if n == 0 || len(r.buf) == 0 {
		return n, io.EOF
	}
	return n, nil
}

func TestBufioPartialReadEOF(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		src := &eofReader{buf: make([]byte, 10)}
		b := im.new(t, src, 4096)
		n, err := b.Read(make([]byte, 5))
		require.NoError(t, err)
		require.Equal(t, 5, n)
		require.Empty(t, src.buf, "everything buffered")
		require.Equal(t, 5, b.Buffered())
		n, err = b.Read([]byte{})
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

// TestBufioScanner runs bufio's Scanner examples (lines, words, a custom
// split with an empty final token) over both readers.
func TestBufioScanner(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		lines := bufio.NewScanner(im.new(t, strings.NewReader("one\ntwo\r\nthree"), 16))
		var got []string
		for lines.Scan() {
			got = append(got, lines.Text())
		}
		require.NoError(t, lines.Err())
		require.Equal(t, []string{"one", "two", "three"}, got)

		words := bufio.NewScanner(im.new(t, strings.NewReader("Now is the winter of our discontent,\nMade glorious summer by this sun of York.\n"), 16))
		words.Split(bufio.ScanWords)
		count := 0
		for words.Scan() {
			count++
		}
		require.NoError(t, words.Err())
		require.Equal(t, 15, count)

		csv := bufio.NewScanner(im.new(t, strings.NewReader("1,2,3,4,"), 16))
		csv.Split(func(data []byte, atEOF bool) (int, []byte, error) {
			for i := range data {
				if data[i] == ',' {
					return i + 1, data[:i], nil
				}
			}
			if !atEOF {
				return 0, nil, nil
			}
			return 0, data, bufio.ErrFinalToken
		})
		got = nil
		for csv.Scan() {
			got = append(got, csv.Text())
		}
		require.NoError(t, csv.Err())
		require.Equal(t, []string{"1", "2", "3", "4", ""}, got)
	})
}

// TestBufioRuneScannerUsers checks the users of io.RuneScanner: fmt.Fscan
// reads through ReadRune/UnreadRune when its reader has them, and regexp
// matches an io.RuneReader.
func TestBufioRuneScannerUsers(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		b := im.new(t, strings.NewReader("42 héllo 3.5\nrest"), 16)
		var n int
		var s string
		var f float64
		c, err := fmt.Fscan(b, &n, &s, &f)
		require.NoError(t, err)
		require.Equal(t, 3, c)
		require.Equal(t, 42, n)
		require.Equal(t, "héllo", s)
		require.Equal(t, 3.5, f)
		// Fscan stops right after the last token: the newline is unread.
		rest, err := io.ReadAll(b)
		require.NoError(t, err)
		require.Equal(t, "\nrest", string(rest))

		b = im.new(t, strings.NewReader("xxxx日本語 abc123def"), 16)
		loc := regexp.MustCompile(`[a-z]+[0-9]+`).FindReaderIndex(b)
		require.Equal(t, []int{14, 20}, loc)
	})
}
