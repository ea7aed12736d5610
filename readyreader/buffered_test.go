package readyreader_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/rawconn"
	"github.com/readyconn/readyconn/readyreader"
)

// chunks is a Reader that delivers its chunks one per ReadOnReady, each in a
// buffer sized to it (split when larger than size), then err (io.EOF if nil).
type chunks struct {
	c     []string
	errs  map[int]error // error returned along with chunk i
	err   error
	calls int
}

func (c *chunks) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if len(c.c) == 0 {
		if c.err == nil {
			return nil, 0, io.EOF
		}
		return nil, 0, c.err
	}
	chunk := c.c[0]
	var err error
	if len(chunk) > size {
		c.c[0] = chunk[size:]
		chunk = chunk[:size]
	} else {
		c.c = c.c[1:]
		err = c.errs[c.calls]
		c.calls++
	}
	buf := pool.Get(len(chunk))
	n := copy(*buf, chunk)
	return buf, n, err
}

type op struct {
	kind    string // read, peek, discard, byte, buffered, ror (ReadOnReady)
	n       int
	want    string
	wantN   int
	wantErr error
}

func TestBuffered(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		chunks []string
		errs   map[int]error
		err    error
		size   int
		ops    []op
	}{
		{name: "small reads", chunks: []string{"hello", " ", "world"}, size: 16, ops: []op{
			{kind: "read", n: 3, want: "hel"}, {kind: "buffered", wantN: 2},
			{kind: "read", n: 3, want: "lo"}, {kind: "buffered", wantN: 0},
			{kind: "read", n: 3, want: " "}, {kind: "read", n: 10, want: "world"},
			{kind: "read", n: 0}, {kind: "read", n: 10, wantErr: io.EOF},
		}},
		{name: "large read goes direct", chunks: []string{"abcdefgh", "ij"}, size: 4, ops: []op{
			{kind: "read", n: 8, want: "abcdefgh"}, {kind: "read", n: 8, want: "ij"},
			{kind: "read", n: 8, wantErr: io.EOF},
		}},
		{name: "peek gathers", chunks: []string{"ab", "cd", "ef"}, size: 16, ops: []op{
			{kind: "peek", n: 5, want: "abcde"}, {kind: "buffered", wantN: 5},
			{kind: "peek", n: 2, want: "ab"}, {kind: "read", n: 16, want: "abcde"},
			{kind: "read", n: 16, want: "f"},
		}},
		{name: "peek larger than size", chunks: []string{"abcdef", "ghij"}, size: 4, ops: []op{
			{kind: "peek", n: 9, want: "abcdefghi"}, {kind: "discard", n: 9, wantN: 9},
			{kind: "byte", want: "j"}, {kind: "byte", wantErr: io.EOF},
		}},
		{name: "peek after partial read", chunks: []string{"abcd", "efgh"}, size: 4, ops: []op{
			{kind: "read", n: 3, want: "abc"}, {kind: "peek", n: 4, want: "defg"},
			{kind: "read", n: 2, want: "de"}, {kind: "peek", n: 2, want: "fg"},
			{kind: "read", n: 10, want: "fg"}, {kind: "read", n: 10, want: "h"},
		}},
		{name: "peek short at EOF", chunks: []string{"abc"}, size: 16, ops: []op{
			{kind: "peek", n: 5, want: "abc", wantErr: io.EOF}, {kind: "read", n: 5, want: "abc"},
			{kind: "read", n: 5, wantErr: io.EOF},
		}},
		{name: "peek zero", chunks: []string{"abc"}, size: 16, ops: []op{
			{kind: "peek", n: 0, want: ""}, {kind: "buffered", wantN: 0}, {kind: "read", n: 5, want: "abc"},
		}},
		{name: "peek zero keeps a pending error", chunks: []string{"abc", "d"}, errs: map[int]error{0: boom}, size: 16, ops: []op{
			// As bufio.Reader.Peek(0): no bytes asked for, no error; the
			// error stays for the next read.
			{kind: "read", n: 3, want: "abc"}, {kind: "peek", n: 0, want: ""},
			{kind: "read", n: 3, wantErr: boom}, {kind: "read", n: 3, want: "d"},
		}},
		{name: "peek negative", chunks: []string{"abc"}, size: 16, ops: []op{
			{kind: "peek", n: -1, wantErr: bufio.ErrNegativeCount}, {kind: "discard", n: -1, wantErr: bufio.ErrNegativeCount},
			{kind: "read", n: 5, want: "abc"},
		}},
		{name: "discard across reads", chunks: []string{"abc", "def"}, size: 16, ops: []op{
			{kind: "discard", n: 4, wantN: 4}, {kind: "byte", want: "e"}, {kind: "byte", want: "f"},
			{kind: "discard", n: 1, wantErr: io.EOF},
		}},
		{name: "discard short at EOF", chunks: []string{"abc"}, size: 16, ops: []op{
			{kind: "discard", n: 5, wantN: 3, wantErr: io.EOF},
		}},
		{name: "bytes", chunks: []string{"a", "bc"}, size: 16, ops: []op{
			{kind: "byte", want: "a"}, {kind: "byte", want: "b"}, {kind: "byte", want: "c"},
			{kind: "byte", wantErr: io.EOF},
		}},
		{name: "error after data is deferred", chunks: []string{"abc", "more"}, errs: map[int]error{0: boom}, size: 16, ops: []op{
			{kind: "read", n: 2, want: "ab"}, {kind: "read", n: 2, want: "c"},
			{kind: "read", n: 2, wantErr: boom},
			// like bufio, the error is reported once; reading resumes
			{kind: "read", n: 10, want: "more"},
		}},
		{name: "error on direct read", chunks: []string{"abcdefgh"}, errs: map[int]error{0: boom}, size: 4, ops: []op{
			{kind: "read", n: 8, want: "abcdefgh", wantErr: boom}, {kind: "read", n: 8, wantErr: io.EOF},
		}},
		{name: "sticky underlying error", err: boom, size: 16, ops: []op{
			{kind: "read", n: 2, wantErr: boom}, {kind: "byte", wantErr: boom},
			{kind: "peek", n: 1, wantErr: boom}, {kind: "ror", n: 4, wantErr: boom},
		}},
		{name: "ReadOnReady stacks", chunks: []string{"abcdef", "gh"}, size: 16, ops: []op{
			{kind: "peek", n: 1, want: "a"}, {kind: "ror", n: 4, want: "abcd"},
			{kind: "ror", n: 4, want: "ef"}, {kind: "ror", n: 4, want: "gh"},
			{kind: "ror", n: 4, wantErr: io.EOF}, {kind: "ror", n: 0, wantErr: readyreader.ErrInvalidSize},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := debugPool()
			src := &chunks{c: append([]string(nil), tc.chunks...), errs: tc.errs, err: tc.err}
			b := readyreader.NewBuffered(src, tc.size, pool)
			for i, o := range tc.ops {
				var got string
				var gotN int
				var err error
				switch o.kind {
				case "read":
					p := make([]byte, o.n)
					gotN, err = b.Read(p)
					got = string(p[:gotN])
				case "peek":
					var p []byte
					p, err = b.Peek(o.n)
					got = string(p)
				case "discard":
					gotN, err = b.Discard(o.n)
				case "byte":
					var c byte
					c, err = b.ReadByte()
					if err == nil {
						got = string(c)
					}
				case "buffered":
					gotN = b.Buffered()
				case "ror":
					var buf *[]byte
					buf, gotN, err = b.ReadOnReady(o.n, pool)
					if gotN > 0 {
						got = string((*buf)[:gotN])
						pool.Put(buf)
					}
				}
				require.Equal(t, o.want, got, "op %d %s(%d)", i, o.kind, o.n)
				if o.kind == "discard" || o.kind == "buffered" {
					require.Equal(t, o.wantN, gotN, "op %d %s(%d)", i, o.kind, o.n)
				}
				if o.wantErr == nil {
					require.NoError(t, err, "op %d %s(%d)", i, o.kind, o.n)
				} else {
					require.ErrorIs(t, err, o.wantErr, "op %d %s(%d)", i, o.kind, o.n)
				}
				// The invariant: a buffer is held exactly while bytes are.
				if b.Buffered() == 0 {
					require.Zero(t, pool.Stats().InUseBytes, "op %d %s(%d)", i, o.kind, o.n)
				} else {
					require.Positive(t, pool.Stats().InUseBytes, "op %d %s(%d)", i, o.kind, o.n)
				}
			}
			b.Reset(nil)
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

func TestBufferedDirectReadTakesNothingFromPool(t *testing.T) {
	pool := debugPool()
	b := readyreader.NewBuffered(&chunks{c: []string{"0123456789"}}, 8, pool)
	p := make([]byte, 10)
	n, err := b.Read(p)
	require.NoError(t, err)
	require.Equal(t, "0123456789", string(p[:n]))
	require.Zero(t, pool.Stats().Gets)
}

// twoBuffers is a Reader that takes a scratch buffer and then a result
// buffer from the pool, as a decrypting layer might, and returns the larger
// result buffer.
type twoBuffers struct{ data string }

func (r *twoBuffers) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if r.data == "" {
		return nil, 0, io.EOF
	}
	scratch := pool.Get(size)
	out := pool.Get(len(r.data))
	copy(*scratch, "scratch garbage")
	n := copy(*out, r.data)
	r.data = ""
	pool.Put(scratch)
	return out, n, nil
}

func TestBufferedStackedReaderUsingSeveralBuffers(t *testing.T) {
	pool := debugPool()
	b := readyreader.NewBuffered(&twoBuffers{data: "0123456789abcdef"}, 4, pool)
	p := make([]byte, 10)
	n, err := b.Read(p)
	require.NoError(t, err)
	require.Equal(t, "0123456789", string(p[:n]))
	require.Equal(t, 6, b.Buffered())
	rest, err := io.ReadAll(b)
	require.NoError(t, err)
	require.Equal(t, "abcdef", string(rest))
	require.Zero(t, pool.Stats().InUseBytes)

	b = readyreader.NewBuffered(&twoBuffers{data: "0123456789"}, 4, pool)
	_, err = b.Peek(1)
	require.NoError(t, err)
	b2 := readyreader.NewBuffered(&chunks{c: []string{"ab", "cdefgh"}}, 2, pool)
	_, err = b2.Peek(1)
	require.NoError(t, err)
	got, err := b2.Peek(8)
	require.NoError(t, err)
	require.Equal(t, "abcdefgh", string(got))
	b.Reset(nil)
	b2.Reset(nil)
	require.Zero(t, pool.Stats().InUseBytes)
}

// emptyReader returns (nil, 0, nil) forever.
type emptyReader struct{}

func (emptyReader) ReadOnReady(int, bufferpool.Pool) (*[]byte, int, error) { return nil, 0, nil }

// liar reports more bytes than its buffer holds.
type liar struct{}

func (liar) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	return pool.Get(1), 2, nil
}

func TestBufferedBadReaders(t *testing.T) {
	pool := debugPool()
	b := readyreader.NewBuffered(emptyReader{}, 16, pool)
	_, err := b.Read(make([]byte, 4))
	require.ErrorIs(t, err, io.ErrNoProgress)
	_, err = b.Read(make([]byte, 32))
	require.ErrorIs(t, err, io.ErrNoProgress)
	_, err = b.Peek(4)
	require.ErrorIs(t, err, io.ErrNoProgress)

	b = readyreader.NewBuffered(liar{}, 16, pool)
	_, err = b.Read(make([]byte, 4))
	require.ErrorContains(t, err, "invalid count")
	_, err = b.Read(make([]byte, 32))
	require.ErrorContains(t, err, "invalid count")
	require.Zero(t, pool.Stats().InUseBytes)
}

func TestNewBufferedDefaults(t *testing.T) {
	b := readyreader.NewBuffered(emptyReader{}, 0, nil)
	require.Equal(t, readyreader.DefaultBufferedSize, b.Size())
	require.Same(t, b, readyreader.NewBuffered(b, 0, nil))
	require.NotSame(t, b, readyreader.NewBuffered(b, 10, nil))
}

func TestBufferedSockets(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			r, w := pair(t, network)
			pool := debugPool()
			b := readyreader.NewBuffered(readyreader.New(r), 4096, pool)

			// Small read parked: no buffer.
			type res struct {
				s   string
				err error
			}
			done := make(chan res, 1)
			go func() {
				p := make([]byte, 10)
				n, err := b.Read(p)
				done <- res{string(p[:n]), err}
			}()
			testnet.WaitBlocked(t, "readyreader.(*Buffered).Read")
			require.Zero(t, pool.Stats().InUseBytes)
			_, err := w.Write(bytes.Repeat([]byte("x"), 100))
			require.NoError(t, err)
			got := <-done
			require.NoError(t, got.err)
			require.Equal(t, "xxxxxxxxxx", got.s)
			// The rest is buffered in a right-sized buffer, not 4 KiB.
			if b.Buffered() > 0 {
				require.LessOrEqual(t, pool.Stats().InUseBytes, int64(128))
			}
			_, err = b.Discard(90)
			require.NoError(t, err)
			require.Zero(t, pool.Stats().InUseBytes)

			// Large read parked: no buffer.
			go func() {
				p := make([]byte, 8192)
				n, err := io.ReadFull(b, p)
				done <- res{string(p[:n]), err}
			}()
			testnet.WaitBlocked(t, "readyreader.(*Buffered).Read")
			require.Zero(t, pool.Stats().InUseBytes)
			big := bytes.Repeat([]byte("0123456789abcdef"), 512)
			_, err = w.Write(big)
			require.NoError(t, err)
			got = <-done
			require.NoError(t, got.err)
			require.Equal(t, string(big), got.s)
			require.Zero(t, pool.Stats().InUseBytes)

			// Peek waiting for the rest of a frame holds only a buffer
			// sized to the frame.
			_, err = w.Write([]byte("abc"))
			require.NoError(t, err)
			go func() {
				p, err := b.Peek(10)
				done <- res{string(p), err}
			}()
			testnet.WaitBlocked(t, "readyreader.(*Buffered).Peek")
			require.LessOrEqual(t, pool.Stats().InUseBytes, int64(64))
			_, err = w.Write([]byte("defghijkl"))
			require.NoError(t, err)
			got = <-done
			require.NoError(t, got.err)
			require.Equal(t, "abcdefghij", got.s)
			_, err = b.Discard(10)
			require.NoError(t, err)
			c, err := b.ReadByte()
			require.NoError(t, err)
			require.Equal(t, byte('k'), c)
			c, err = b.ReadByte()
			require.NoError(t, err)
			require.Equal(t, byte('l'), c)
			require.Zero(t, pool.Stats().InUseBytes)

			// Deadline while parked, then resume.
			require.NoError(t, r.SetReadDeadline(time.Now().Add(30*time.Millisecond)))
			_, err = b.Read(make([]byte, 10))
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			require.Zero(t, pool.Stats().InUseBytes)
			require.NoError(t, r.SetReadDeadline(time.Time{}))
			_, err = w.Write([]byte("z"))
			require.NoError(t, err)
			c, err = b.ReadByte()
			require.NoError(t, err)
			require.Equal(t, byte('z'), c)

			// Close while parked.
			errc := make(chan error, 1)
			go func() {
				_, err := b.Read(make([]byte, 10))
				errc <- err
			}()
			testnet.WaitBlocked(t, "readyreader.(*Buffered).Read")
			require.Zero(t, pool.Stats().InUseBytes)
			require.NoError(t, r.Close())
			select {
			case err := <-errc:
				require.ErrorIs(t, err, net.ErrClosed)
			case <-time.After(30 * time.Second):
				t.Fatal("Close did not unblock Read")
			}
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

func TestBufferedSteadyStateAllocs(t *testing.T) {
	r, w := pair(t, "tcp")
	pool := bufferpool.NewTiered()
	b := readyreader.NewBuffered(readyreader.New(r), 4096, pool)
	werr := make(chan error, 1)
	go func() {
		_, err := w.Write(make([]byte, 1<<20))
		werr <- err
	}()
	_, err := io.ReadFull(b, make([]byte, 1))
	require.NoError(t, err)
	small := make([]byte, 100)
	large := make([]byte, 8192)
	for name, f := range map[string]func(){
		"Read":       func() { _, err = b.Read(small) },
		"ReadDirect": func() { _, err = b.Read(large) },
		"ReadByte":   func() { _, err = b.ReadByte() },
		"PeekDiscard": func() {
			if _, err = b.Peek(10); err == nil {
				_, err = b.Discard(10)
			}
		},
	} {
		allocs := testing.AllocsPerRun(50, f)
		require.NoError(t, err, name)
		require.Zero(t, allocs, name)
	}
	_, err = io.Copy(io.Discard, io.LimitReader(b, 1<<20-1-50*(100+8192+1+10)-4*(100+8192+1+10)))
	require.NoError(t, err)
	require.NoError(t, <-werr)
}

// TestPeekTakesNoMemoryBeforeBytes asks for a 64 MiB Peek while the peer
// is silent: no buffer of that size may be taken before bytes arrive, on
// the blocking fallback (net.Pipe) or on a socket, and while the rest is
// awaited the buffer is sized to what arrived.
func TestPeekTakesNoMemoryBeforeBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		pair func(t *testing.T) (net.Conn, net.Conn)
		idle int64  // pool bytes allowed while nothing has arrived
		gets uint64 // pool Gets once the first bytes are in
	}{
		// The blocking fallback pins the one read of Size() it waits in.
		{name: "blocking", pair: func(t *testing.T) (net.Conn, net.Conn) {
			a, b := net.Pipe()
			t.Cleanup(func() { a.Close(); b.Close() })
			return a, b
		}, idle: 4096, gets: 2},
		{name: "tcp", pair: func(t *testing.T) (net.Conn, net.Conn) { return pair(t, "tcp") }, idle: 0, gets: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w := tc.pair(t)
			pool := bufferpool.NewTiered()
			b := readyreader.NewBuffered(readyreader.New(r), 4096, pool)
			type res struct {
				n   int
				err error
			}
			done := make(chan res, 1)
			go func() {
				p, err := b.Peek(64 << 20)
				done <- res{len(p), err}
			}()
			testnet.WaitBlocked(t, "readyreader.(*Buffered).Peek")
			require.LessOrEqual(t, pool.Stats().InUseBytes, tc.idle)
			_, err := w.Write(bytes.Repeat([]byte("p"), 10))
			require.NoError(t, err)
			// The ten bytes arrived and Peek waits for more, holding a
			// small buffer (64 B gathering, or rawconn's first wake-up
			// buffer of 128 B).
			for pool.Stats().Gets < tc.gets {
				runtime.Gosched()
			}
			testnet.WaitBlocked(t, "readyreader.(*Buffered).Peek")
			require.LessOrEqual(t, pool.Stats().InUseBytes, tc.idle+128)
			require.NoError(t, w.Close())
			got := <-done
			require.Equal(t, 10, got.n)
			require.ErrorIs(t, got.err, io.EOF)
			b.Reset(nil)
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

// TestSliceValidUntilNextCall checks that the slices of ReadSlice, ReadLine
// and Peek keep their bytes until the next call even when the call
// consumed the last buffered byte (a debug pool poisons what it gets
// back), and that the next call gives the buffer back.
func TestSliceValidUntilNextCall(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(b *readyreader.Buffered) ([]byte, error)
		want string
	}{
		{"ReadSlice", func(b *readyreader.Buffered) ([]byte, error) { return b.ReadSlice('\n') }, "line\n"},
		{"ReadLine", func(b *readyreader.Buffered) ([]byte, error) {
			l, _, err := b.ReadLine()
			return l, err
		}, "line"},
		{"ReadSlice at EOF", func(b *readyreader.Buffered) ([]byte, error) {
			p, err := b.ReadSlice('x')
			require.ErrorIs(t, err, io.EOF)
			return p, nil
		}, "line\n"},
		{"Peek", func(b *readyreader.Buffered) ([]byte, error) { return b.Peek(5) }, "line\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := debugPool()
			b := readyreader.NewBuffered(&chunks{c: []string{"line\n"}}, 16, pool)
			p, err := tc.call(b)
			require.NoError(t, err)
			require.Positive(t, pool.Stats().InUseBytes, "the slice's buffer is held")
			require.Equal(t, tc.want, string(p), "the slice was released early")
			if tc.name == "Peek" {
				_, err = b.Discard(5)
				require.NoError(t, err)
			} else {
				_, err = b.ReadByte()
				require.ErrorIs(t, err, io.EOF)
			}
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

// TestSliceReleasedBeforeWaiting checks that a buffer held for a slice
// goes back before the next call waits for the connection.
func TestSliceReleasedBeforeWaiting(t *testing.T) {
	r, w := pair(t, "tcp")
	pool := debugPool()
	b := readyreader.NewBuffered(readyreader.New(r), 4096, pool)
	_, err := w.Write([]byte("one\n"))
	require.NoError(t, err)
	line, err := b.ReadSlice('\n')
	require.NoError(t, err)
	require.Equal(t, "one\n", string(line))
	done := make(chan string, 1)
	go func() {
		s, _ := b.ReadString('\n')
		done <- s
	}()
	testnet.WaitBlocked(t, "readyreader.(*Buffered).ReadSlice")
	require.Zero(t, pool.Stats().InUseBytes, "parked holding the last slice's buffer")
	_, err = w.Write([]byte("two\n"))
	require.NoError(t, err)
	require.Equal(t, "two\n", <-done)
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestUnreadAfterRelease unreads a byte and runes after the Buffered gave
// its buffer back: a small buffer is taken for the bytes, which read back
// exactly (an invalid byte too, not its replacement character).
func TestUnreadAfterRelease(t *testing.T) {
	pool := debugPool()
	b := readyreader.NewBuffered(&chunks{c: []string{"a", "日", "\xff", "z"}}, 16, pool)
	c, err := b.ReadByte()
	require.NoError(t, err)
	require.Equal(t, byte('a'), c)
	require.Zero(t, pool.Stats().InUseBytes)
	require.NoError(t, b.UnreadByte())
	require.Equal(t, 1, b.Buffered())
	c, err = b.ReadByte()
	require.NoError(t, err)
	require.Equal(t, byte('a'), c)
	for _, want := range []struct {
		r    rune
		size int
		raw  string
	}{{'日', 3, "日"}, {utf8.RuneError, 1, "\xff"}, {'z', 1, "z"}} {
		r, size, err := b.ReadRune()
		require.NoError(t, err)
		require.Equal(t, want.r, r)
		require.Equal(t, want.size, size)
		require.Zero(t, pool.Stats().InUseBytes)
		require.NoError(t, b.UnreadRune())
		p, err := b.Peek(size)
		require.NoError(t, err)
		require.Equal(t, want.raw, string(p))
		r, _, err = b.ReadRune()
		require.NoError(t, err)
		require.Equal(t, want.r, r)
	}
	_, _, err = b.ReadRune()
	require.ErrorIs(t, err, io.EOF)
	require.Zero(t, pool.Stats().InUseBytes)
}

// shortWriter writes at most max bytes per call, with no error.
type shortWriter struct {
	max int
	n   int // negative: report this count
}

func (w shortWriter) Write(p []byte) (int, error) {
	if w.n < 0 {
		return w.n, nil
	}
	return min(len(p), w.max), nil
}

func TestWriteToShortAndBadWrites(t *testing.T) {
	pool := debugPool()
	b := readyreader.NewBuffered(&chunks{c: []string{"abcdef"}}, 16, pool)
	n, err := b.WriteTo(shortWriter{max: 2})
	require.ErrorIs(t, err, io.ErrShortWrite)
	require.Equal(t, int64(2), n)
	require.Equal(t, 4, b.Buffered(), "the unwritten bytes stay")
	n, err = b.WriteTo(shortWriter{n: -1})
	require.ErrorContains(t, err, "invalid write")
	require.Zero(t, n)
	rest, err := io.ReadAll(b)
	require.NoError(t, err)
	require.Equal(t, "cdef", string(rest))
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestWriteToSocket copies a stream with io.Copy, which uses WriteTo: no
// buffer is held while it waits for the next bytes.
func TestWriteToSocket(t *testing.T) {
	r, w := pair(t, "tcp")
	pool := debugPool()
	b := readyreader.NewBuffered(readyreader.New(r), 4096, pool)
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(&out, b)
		done <- err
	}()
	msg := bytes.Repeat([]byte("0123456789"), 1000)
	for i := range 3 {
		testnet.WaitBlocked(t, "readyreader.(*Buffered).WriteTo")
		require.Zero(t, pool.Stats().InUseBytes, "round %d", i)
		_, err := w.Write(msg)
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	require.NoError(t, <-done)
	require.Equal(t, bytes.Repeat(msg, 3), out.Bytes())
	require.Zero(t, pool.Stats().InUseBytes)
}

func TestErrInvalidSizeEverywhere(t *testing.T) {
	require.Same(t, rawconn.ErrInvalidSize, readyreader.ErrInvalidSize)
	r, _ := pair(t, "tcp")
	pool := debugPool()
	for name, rd := range map[string]readyreader.Reader{
		"New(socket)": readyreader.New(r),
		"blocking":    readyreader.New(onlyReader{bytes.NewReader(nil)}),
		"Buffered":    readyreader.NewBuffered(emptyReader{}, 0, pool),
	} {
		_, _, err := rd.ReadOnReady(0, pool)
		require.Same(t, readyreader.ErrInvalidSize, err, name)
	}
}

// stepReader is a Reader that runs one scripted step per ReadOnReady.
type stepReader []func(size int, pool bufferpool.Pool) (*[]byte, int, error)

func (s *stepReader) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	if len(*s) == 0 {
		return nil, 0, io.EOF
	}
	step := (*s)[0]
	*s = (*s)[1:]
	return step(size, pool)
}

// give returns a step that takes a buffer of n bytes (at least the data)
// from the pool and returns data in it, with err.
func give(data string, n int, err error) func(int, bufferpool.Pool) (*[]byte, int, error) {
	return func(_ int, pool bufferpool.Pool) (*[]byte, int, error) {
		buf := pool.Get(max(n, len(data)))
		return buf, copy(*buf, data), err
	}
}

// TestPeekGatherEdges covers the second and later reads of a Peek that
// gathers: a Reader returning a buffer of its own choosing larger than the
// free tail, empty reads, bad counts and errors.
func TestPeekGatherEdges(t *testing.T) {
	boom := errors.New("boom")
	empty := func(int, bufferpool.Pool) (*[]byte, int, error) { return nil, 0, nil }
	emptyWithBuffer := func(_ int, pool bufferpool.Pool) (*[]byte, int, error) { return pool.Get(8), 0, nil }
	lie := func(_ int, pool bufferpool.Pool) (*[]byte, int, error) { return pool.Get(1), 2, nil }
	lieLent := func(size int, pool bufferpool.Pool) (*[]byte, int, error) { return pool.Get(size), size + 1, nil }
	steps := func(s ...func(int, bufferpool.Pool) (*[]byte, int, error)) []func(int, bufferpool.Pool) (*[]byte, int, error) {
		return s
	}
	for _, tc := range []struct {
		name    string
		steps   []func(int, bufferpool.Pool) (*[]byte, int, error)
		want    string
		wantErr error
	}{
		{name: "own larger buffer", steps: steps(give("abc", 0, nil), give("defghij", 4096, nil)), want: "abcdefghij"},
		{name: "own buffer with error", steps: steps(give("abc", 0, nil), give("defghij", 4096, boom)), want: "abcdefghij"},
		{name: "empty reads", steps: steps(give("abc", 0, nil), empty, emptyWithBuffer, give("defghij", 0, nil)), want: "abcdefghij"},
		{name: "no progress", steps: append(steps(give("abc", 0, nil)), slices.Repeat(steps(empty), 100)...), want: "abc", wantErr: io.ErrNoProgress},
		{name: "bad count", steps: steps(give("abc", 0, nil), lie), want: "abc", wantErr: errors.New("invalid count")},
		{name: "bad count in the lent tail", steps: steps(give("abc", 0, nil), lieLent), want: "abc", wantErr: errors.New("invalid count")},
		{name: "error", steps: steps(give("abc", 0, nil), func(int, bufferpool.Pool) (*[]byte, int, error) { return nil, 0, boom }), want: "abc", wantErr: boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := debugPool()
			sr := stepReader(tc.steps)
			b := readyreader.NewBuffered(&sr, 4096, pool)
			p, err := b.Peek(10)
			require.Equal(t, tc.want, string(p))
			switch {
			case tc.wantErr == nil:
				require.NoError(t, err)
			case strings.Contains(tc.wantErr.Error(), "invalid count"):
				require.ErrorContains(t, err, "invalid count")
			default:
				require.ErrorIs(t, err, tc.wantErr)
			}
			b.Reset(nil)
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

// TestBufferedKeepsNoReference checks what the pool's counters cannot show:
// that once its bytes are consumed a Buffered parked in Read keeps no
// reference into any buffer it gave back (an empty slice into one would
// keep it alive after the pool let go of it), after small messages, a
// large one, and bytes taken through every way of consuming them.
func TestBufferedKeepsNoReference(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			r, w := pair(t, network)
			pool := &testnet.ForgetPool{}
			b := readyreader.NewBuffered(readyreader.New(r), 32<<10, pool)
			send := func(p []byte) {
				t.Helper()
				_, err := w.Write(p)
				require.NoError(t, err)
			}
			send([]byte("one line\nsecond"))
			line, err := b.ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, "one line\n", line)
			peek, err := b.Peek(6)
			require.NoError(t, err)
			require.Equal(t, "second", string(peek))
			_, err = b.Discard(6)
			require.NoError(t, err)
			big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
			send(big)
			got := make([]byte, len(big))
			for n := 0; n < len(got); {
				k, err := b.Read(got[n:min(len(got), n+100)])
				require.NoError(t, err)
				n += k
			}
			require.Equal(t, big, got)
			send([]byte("xy"))
			c, err := b.ReadByte()
			require.NoError(t, err)
			require.Equal(t, byte('x'), c)
			require.NoError(t, b.UnreadByte())
			rest := make([]byte, 2)
			_, err = io.ReadFull(b, rest)
			require.NoError(t, err)
			require.Equal(t, "xy", string(rest))

			done := make(chan error, 1)
			go func() {
				_, err := b.Read(make([]byte, 10))
				done <- err
			}()
			testnet.WaitBlocked(t, "readyreader.(*Buffered).Read")
			require.Zero(t, pool.InUseBytes())
			pool.RequireUnreferenced(t)
			send([]byte("z"))
			require.NoError(t, <-done)
		})
	}
}
