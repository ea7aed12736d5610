package record

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
)

// testStream returns sealed records of assorted sizes and their bodies.
func testStream() (stream, bodies []byte) {
	for i, n := range []int{0, 1, 2, 100, 4093, 4096, 5000, 17000, 0, 3, maxTestBody, 7} {
		b := body(i, n)
		stream = append(stream, sealed(b)...)
		bodies = append(bodies, b...)
	}
	return stream, bodies
}

// TestReaderRecords reads one stream cut in many ways, with every feed
// mode, delivering in small and large pieces.
func TestReaderRecords(t *testing.T) {
	stream, want := testStream()
	cuts := map[string][]int{
		"whole":  {len(stream)},
		"header": {1, 2, 3, 100000},
		"odd":    {3, 8, 1000, 5, 17000, 70000, 9},
		"small":  {1, 7, 13},
	}
	modes := map[string]feedMode{"sized": sized, "full": full, "probe": probe}
	for cname, sizes := range cuts {
		for mname, mode := range modes {
			for _, deliver := range []int{1, 100, 1 << 17} {
				if cname == "small" && deliver == 1 {
					continue // slow, and covered by the others
				}
				t.Run(cname+"/"+mname+"/"+itoa(deliver), func(t *testing.T) {
					r, pool := newTestReader(&feed{chunks: chunk(stream, sizes...), mode: mode})
					got, err := drain(t, r, deliver)
					require.ErrorIs(t, err, io.EOF)
					require.True(t, bytes.Equal(want, got), "bodies differ")
					requireIdle(t, pool)
				})
			}
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestReaderGrowsWithArrivals announces a large record and sends it in
// growing pieces: the buffer grows with what arrived, never to the
// announced length ahead of the bytes.
func TestReaderGrowsWithArrivals(t *testing.T) {
	b := body(1, maxTestBody)
	stream := sealed(b)
	pieces := []int{1, 2, 100, 900, 3000, 10_000, 20_000, 1 << 20}
	for _, mode := range []feedMode{sized, probe} {
		f := &feed{chunks: chunk(stream, pieces...), mode: mode}
		r, pool := newTestReader(f)
		arrived := 0
		for arrived < len(stream) {
			require.NoError(t, r.Fill())
			arrived = r.Unparsed()
			if arrived < len(stream) {
				rec, err := r.Next()
				require.NoError(t, err)
				require.Nil(t, rec, "incomplete record returned")
				r.ReleaseIfDrained()
				held := int(pool.inUse())
				assert.GreaterOrEqual(t, held, arrived)
				assert.LessOrEqual(t, held, max(2*arrived+arrived/2, 2*minHold), "arrived %d", arrived)
			}
		}
		rec, err := r.Next()
		require.NoError(t, err)
		require.Len(t, rec, len(stream))
		r.ReleaseIfDrained()
		requireIdle(t, pool)
		assert.LessOrEqual(t, pool.largest, 2*len(stream), "a Get far larger than the record")
	}
}

// TestReaderStalledPartialHoldsWhatArrived takes 100 bytes of a large
// record through a reader that takes a whole read-size buffer (the blocking
// fallback): once the partial record is all that is buffered, the Reader
// moves it to a buffer sized to it.
func TestReaderStalledPartialHoldsWhatArrived(t *testing.T) {
	stream := sealed(body(2, maxTestBody))
	f := &feed{chunks: [][]byte{stream[:100]}, mode: full}
	r, pool := newTestReader(f)
	require.NoError(t, r.Fill())
	require.GreaterOrEqual(t, pool.inUse(), int64(WakeReadSize), "the feed took a whole read size")
	rec, err := r.Next()
	require.NoError(t, err)
	require.Nil(t, rec)
	r.ReleaseIfDrained()
	require.LessOrEqual(t, pool.inUse(), int64(minHold), "a stalled partial record holds about what arrived")
	require.Equal(t, 100, r.Unparsed())
	// The rest arrives; the record is whole.
	f.chunks = [][]byte{stream[100:]}
	for r.Unparsed() < len(stream) {
		require.NoError(t, r.Fill())
	}
	rec, err = r.Next()
	require.NoError(t, err)
	require.True(t, bytes.Equal(stream, rec))
	r.Release()
	requireIdle(t, pool)
}

// TestReaderShrink delivers a large record that shares its buffer with the
// start of a small one: once the large one is delivered, the partial one
// moves to a small buffer, and the large buffer goes back cleared where
// plaintext was opened.
func TestReaderShrink(t *testing.T) {
	marker := []byte("OPENED-PLAINTEXT")
	big := bytes.Repeat(marker, 2000) // 32000 B
	next := sealed(body(3, 9000))
	stream := append(sealed(big), next[:50]...)
	f := &feed{chunks: [][]byte{stream}, mode: full}
	r, pool := newTestReader(f)
	pool.marker = marker
	require.NoError(t, r.Fill())
	rec, err := r.Next()
	require.NoError(t, err)
	b := rec[testHeaderLen:]
	unseal(b)
	r.Opened()
	r.SetPlain(b)
	out := make([]byte, len(big))
	require.Equal(t, len(big), r.Deliver(out))
	require.Equal(t, big, out)
	require.LessOrEqual(t, pool.inUse(), int64(minHold), "shrunk to the partial record")
	require.Equal(t, 50, r.Unparsed())
	require.Zero(t, pool.dirty, "a buffer went back with opened plaintext")
	// A buffer that is not much larger than the partial record is kept.
	before := pool.Stats().Gets
	r.ReleaseIfDrained()
	require.Equal(t, before, pool.Stats().Gets)
	f.chunks = [][]byte{next[50:]}
	got, err := drain(t, r, 1000)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, body(3, 9000), got)
	requireIdle(t, pool)
	require.Zero(t, pool.dirty)
}

// TestReaderEnds checks how the stream may end: between records (io.EOF),
// inside a header or a body (Format.Truncated), with an error that came
// with the last bytes (reported once they are used), and with reads that
// return nothing (io.ErrNoProgress).
func TestReaderEnds(t *testing.T) {
	one := sealed([]byte("one"))
	two := sealed([]byte("two two"))
	errConn := errors.New("connection reset")
	tests := []struct {
		name   string
		chunks [][]byte
		err    error
		want   string
		target error
	}{
		{"between records", [][]byte{one, two}, nil, "onetwo two", io.EOF},
		{"inside a header", [][]byte{one, two[:2]}, nil, "one", io.ErrUnexpectedEOF},
		{"inside a body", [][]byte{one, two[:5]}, nil, "one", io.ErrUnexpectedEOF},
		{"error between records", [][]byte{one}, errConn, "one", errConn},
		{"error inside a body", [][]byte{one, two[:5]}, errConn, "one", errConn},
		{"nothing", nil, nil, "", io.EOF},
	}
	for _, tt := range tests {
		for _, mode := range []feedMode{sized, full, probe, failWithBuf} {
			t.Run(tt.name+"/"+itoa(int(mode)), func(t *testing.T) {
				r, pool := newTestReader(&feed{chunks: slices.Clone(tt.chunks), err: tt.err, mode: mode})
				got, err := drain(t, r, 100)
				require.ErrorIs(t, err, tt.target)
				if errors.Is(tt.target, io.ErrUnexpectedEOF) {
					require.ErrorIs(t, err, errTestTruncated)
				}
				require.Equal(t, tt.want, string(got))
				requireIdle(t, pool)
			})
		}
	}
}

// errReader returns its bytes and its error from the same Read, then
// nothing but the error.
type errReader struct {
	b   []byte
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n := copy(p, e.b)
	e.b = e.b[n:]
	return n, e.err
}

// TestReaderErrorWithBytes checks that an error that comes with bytes is
// reported by the next Fill, after the bytes: at a record boundary as it is
// (io.EOF), inside a record as Truncated.
func TestReaderErrorWithBytes(t *testing.T) {
	one := sealed([]byte("one"))
	for _, tt := range []struct {
		data   []byte
		target error
	}{{one, io.EOF}, {one[:4], errTestTruncated}} {
		pool := newCountPool()
		var r Reader
		r.Init(&errReader{b: tt.data, err: io.EOF}, pool, &testFormat)
		require.True(t, r.Pinning(), "a plain io.Reader takes the blocking path")
		require.NoError(t, r.Fill())
		require.Equal(t, len(tt.data), r.Unparsed())
		rec, err := r.Next()
		require.NoError(t, err)
		require.Equal(t, len(tt.data) == len(one), rec != nil)
		err = r.Fill()
		require.ErrorIs(t, err, tt.target)
		r.Release()
		requireIdle(t, pool)
	}
	// A deadline with the bytes: reported once, then reading goes on.
	pool := newCountPool()
	var r Reader
	er := &errReader{b: one[:4], err: os.ErrDeadlineExceeded}
	r.Init(er, pool, &testFormat)
	require.NoError(t, r.Fill())
	require.ErrorIs(t, r.Fill(), os.ErrDeadlineExceeded)
	er.b, er.err = one[4:], nil
	require.NoError(t, r.Fill())
	rec, err := r.Next()
	require.NoError(t, err)
	require.Equal(t, one, rec)
	r.ReleaseIfDrained()
	requireIdle(t, pool)
}

// zeroReader returns (0, nil) a few times, then its bytes.
type zeroReader struct {
	zeros int
	b     []byte
}

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.zeros > 0 {
		z.zeros--
		return 0, nil
	}
	if len(z.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, z.b)
	z.b = z.b[n:]
	return n, nil
}

// TestReaderNoProgress checks that a read of nothing on the path that reads
// into the free space of the buffer is io.ErrNoProgress, which may be
// retried.
func TestReaderNoProgress(t *testing.T) {
	one := sealed([]byte("one"))
	f := &feed{chunks: [][]byte{one[:2]}, mode: full}
	r, pool := newTestReader(f)
	require.NoError(t, r.Fill())
	// The feed is empty now: its Read returns EOF; switch to a reader that
	// returns nothing first.
	z := &zeroReader{zeros: 2, b: one[2:]}
	r.conn = z
	require.ErrorIs(t, r.Fill(), io.ErrNoProgress)
	require.ErrorIs(t, r.Fill(), io.ErrNoProgress)
	require.NoError(t, r.Fill())
	rec, err := r.Next()
	require.NoError(t, err)
	require.Equal(t, one, rec)
	r.ReleaseIfDrained()
	requireIdle(t, pool)
}

// TestReaderRefusesHeaderBeforeAllocation checks that a header announcing
// too much (or of the wrong type) is refused as soon as its bytes are there,
// before any buffer is sized for the record, and that Next keeps refusing.
func TestReaderRefusesHeaderBeforeAllocation(t *testing.T) {
	for _, hdr := range [][]byte{{'R', 0xff, 0xff}, {'R', (maxTestBody + 1) >> 8, (maxTestBody + 1) & 0xff}, {'X', 0, 1}} {
		for _, sizes := range [][]int{{1}, {2, 1}, {1000}} {
			stream := append(sealed([]byte("ok")), hdr...)
			stream = append(stream, make([]byte, 200)...)
			r, pool := newTestReader(&feed{chunks: chunk(stream, sizes...)})
			got, err := drain(t, r, 100)
			require.ErrorIs(t, err, errTestHeader)
			require.Equal(t, "ok", string(got))
			require.LessOrEqual(t, pool.largest, 2*len(stream), "a buffer sized by the refused header")
			requireIdle(t, pool)
		}
	}
}

// TestReaderWakePool covers the ways a readyreader may use the pool the
// Reader lends it while part of a record is buffered: one Get (the new
// bytes land behind the partial record), a probe Get given back before a
// second one (merge), a Get of a buffer it returns empty with an error (the
// Reader puts it back), and a probe it never gives back.
func TestReaderWakePool(t *testing.T) {
	stream := sealed(body(4, 30000))
	for _, mode := range []feedMode{sized, probe, probeLeak, failWithBuf} {
		t.Run(itoa(int(mode)), func(t *testing.T) {
			f := &feed{chunks: [][]byte{stream[:100]}, mode: sized}
			r, pool := newTestReader(f)
			require.NoError(t, r.Fill())
			f.mode = mode
			f.chunks = chunk(stream[100:], 5000)
			if mode == failWithBuf {
				f.chunks = nil
			}
			for r.Unparsed() < len(stream) {
				err := r.Fill()
				if mode == failWithBuf {
					require.ErrorIs(t, err, io.ErrUnexpectedEOF, "a wake that returned an empty buffer and EOF")
					require.Zero(t, r.wake.orig)
					r.Release()
					requireIdle(t, pool)
					return
				}
				require.NoError(t, err)
				require.Nil(t, r.wake.orig, "the wake pool still holds a buffer")
			}
			rec, err := r.Next()
			require.NoError(t, err)
			require.True(t, bytes.Equal(stream, rec))
			r.ReleaseIfDrained()
			requireIdle(t, pool)
		})
	}
}

// TestReaderSetLeftover checks that leftover bytes come first, at any cut,
// and that a second SetLeftover replaces what was buffered.
func TestReaderSetLeftover(t *testing.T) {
	stream, want := testStream()
	stream, want = stream[:30000], want[:0]
	// The bodies of the complete records in the first 30000 bytes.
	for b := stream; len(b) >= testHeaderLen; {
		l := int(b[1])<<8 | int(b[2])
		if len(b) < testHeaderLen+l {
			break
		}
		body := bytes.Clone(b[testHeaderLen : testHeaderLen+l])
		unseal(body)
		want = append(want, body...)
		b = b[testHeaderLen+l:]
	}
	for _, cut := range []int{0, 1, 2, 3, 4, 100, 5000, 29999, 30000} {
		f := &feed{chunks: chunk(stream[cut:], 777)}
		r, pool := newTestReader(f)
		if cut > 0 {
			r.SetLeftover([]byte("garbage to be replaced"))
		}
		r.SetLeftover(stream[:cut])
		r.SetLeftover(nil) // no-op
		got, err := drain(t, r, 1000)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut %d", cut)
		require.True(t, bytes.Equal(want, got), "cut %d", cut)
		requireIdle(t, pool)
	}
}

// TestReaderClearsOpened checks that every buffer in which records were
// opened goes back to the pool without their plaintext, whatever path
// gives it back (drained, shrunk, grown, released with plaintext pending),
// and that nothing else is cleared needlessly.
func TestReaderClearsOpened(t *testing.T) {
	marker := []byte("SECRET-PLAINTEXT")
	msg := bytes.Repeat(marker, 400) // 6400 B
	var stream []byte
	for range 6 {
		stream = append(stream, sealed(msg)...)
	}
	for _, mode := range []feedMode{sized, full, probe} {
		for _, sizes := range [][]int{{len(stream)}, {100, 9000}, {7000, 5, 3}} {
			for _, deliver := range []int{10, 1 << 16} {
				f := &feed{chunks: chunk(stream, sizes...), mode: mode}
				r, pool := newTestReader(f)
				pool.marker = marker
				got, err := drain(t, r, deliver)
				require.ErrorIs(t, err, io.EOF)
				require.Equal(t, 6*len(msg), len(got))
				require.Zero(t, pool.dirty, "plaintext went back to the pool")
				requireIdle(t, pool)
			}
		}
	}
	// Release with opened plaintext pending.
	r, pool := newTestReader(&feed{chunks: [][]byte{stream}})
	pool.marker = marker
	require.NoError(t, r.Fill())
	rec, err := r.Next()
	require.NoError(t, err)
	unseal(rec[testHeaderLen:])
	r.Opened()
	r.SetPlain(rec[testHeaderLen:])
	require.Equal(t, 10, r.Deliver(make([]byte, 10)))
	r.Release()
	require.Zero(t, pool.dirty)
	require.Empty(t, r.Plain())
	requireIdle(t, pool)
	// Bytes that were never opened are not cleared: only what may hold
	// plaintext costs a clear.
	pool.marker = []byte("R")
	r, pool2 := newTestReader(&feed{chunks: [][]byte{stream[:100]}})
	pool2.marker = stream[:20]
	require.NoError(t, r.Fill())
	r.Release()
	require.Equal(t, 1, pool2.dirty, "unopened bytes were cleared")
}

// TestReaderPinning checks which path Init picks.
func TestReaderPinning(t *testing.T) {
	pool := bufferpool.NewTiered()
	var r Reader
	r.Init(&feed{}, pool, &testFormat)
	require.False(t, r.Pinning())
	r.Init(iotest.OneByteReader(bytes.NewReader(nil)), pool, &testFormat)
	require.True(t, r.Pinning())
	require.Equal(t, BlockingReadSize, r.readSize)
}

// TestReaderKeepsNoBufferAfterPut checks that once the plaintext of a
// record is delivered and the buffer given back, the Reader holds no
// reference into it: an idle connection must not keep its last buffer alive
// behind the pool's back (the pool's counters would say 0 bytes in use
// while the garbage collector could free nothing). It failed when the empty
// plaintext view kept pointing into the buffer.
func TestReaderKeepsNoBufferAfterPut(t *testing.T) {
	for _, size := range []int{10, 6400, 3 << 14} {
		msg := body(size, size)
		f := &feed{chunks: [][]byte{sealed(msg), sealed(msg)}}
		pool := &testnet.ForgetPool{}
		r := new(Reader)
		r.Init(f, pool, &testFormat)
		for range 2 {
			var rec []byte
			for rec == nil {
				require.NoError(t, r.Fill())
				var err error
				rec, err = r.Next()
				require.NoError(t, err)
			}
			b := rec[testHeaderLen:]
			unseal(b)
			r.Opened()
			r.SetPlain(b)
			var got []byte
			p := make([]byte, 1000)
			for len(r.Plain()) > 0 {
				n := r.Deliver(p)
				got = append(got, p[:n]...)
			}
			require.Equal(t, msg, got)
		}
		require.Zero(t, pool.InUseBytes(), "size %d", size)
		pool.RequireUnreferenced(t)
		runtime.KeepAlive(r)
	}
}
