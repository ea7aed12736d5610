package readyreader_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
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
			waitBlocked(t, "readyreader.(*Buffered).Read")
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
			waitBlocked(t, "readyreader.(*Buffered).Read")
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
			waitBlocked(t, "readyreader.(*Buffered).Peek")
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
			waitBlocked(t, "readyreader.(*Buffered).Read")
			require.Zero(t, pool.Stats().InUseBytes)
			require.NoError(t, r.Close())
			select {
			case err := <-errc:
				require.ErrorIs(t, err, net.ErrClosed)
			case <-time.After(5 * time.Second):
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
	time.Sleep(20 * time.Millisecond)
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
