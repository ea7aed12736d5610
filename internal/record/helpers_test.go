package record

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/readyconn/readyconn/bufferpool"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The test format: a 3-byte header, 'R' and a big-endian 16-bit body
// length of at most maxTestBody.
const (
	testHeaderLen = 3
	maxTestBody   = 50000
)

var (
	errTestTruncated = fmt.Errorf("test: stream ended inside a record: %w", io.ErrUnexpectedEOF)
	errTestHeader    = errors.New("test: bad record header")
)

var testFormat = Format{
	HeaderLen: testHeaderLen,
	Length: func(h []byte) (int, error) {
		l := int(h[1])<<8 | int(h[2])
		if h[0] != 'R' || l > maxTestBody {
			return 0, errTestHeader
		}
		return testHeaderLen + l, nil
	},
	Truncated: errTestTruncated,
}

// rec returns a test record with body b.
func rec(b []byte) []byte {
	return append([]byte{'R', byte(len(b) >> 8), byte(len(b))}, b...)
}

// body returns n bytes of a pattern that depends on seed.
func body(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31 + i*7)
	}
	return b
}

// feedMode says how a feed's ReadOnReady uses the pool it is given.
type feedMode int

const (
	// sized takes a buffer of what the next chunk holds (up to size), as
	// rawconn does with FIONREAD.
	sized feedMode = iota
	// full takes size bytes, as readyreader's blocking fallback does.
	full
	// probe takes a 1-byte buffer, then a second one of the chunk's size,
	// gives the first back and returns the second.
	probe
	// probeLeak is probe without giving the first buffer back: a
	// Reader that breaks the contract; the record Reader must still not
	// leak the buffer it lent.
	probeLeak
	// failWithBuf takes a buffer, reads nothing, and returns it with the
	// chunk's error (a count of 0 with a buffer, which the contract does
	// not promise never happens).
	failWithBuf
)

// feed is a connection that returns chunks in order and then err (io.EOF
// when nil). It is a readyreader.Reader that takes buffers as mode says.
type feed struct {
	chunks [][]byte
	err    error
	mode   feedMode
	reads  int // Read calls
	wakes  int // ReadOnReady calls
}

func (f *feed) next() []byte {
	for len(f.chunks) > 0 && len(f.chunks[0]) == 0 {
		f.chunks = f.chunks[1:]
	}
	if len(f.chunks) == 0 {
		return nil
	}
	return f.chunks[0]
}

func (f *feed) end() error {
	if f.err != nil {
		return f.err
	}
	return io.EOF
}

func (f *feed) take(p []byte) int {
	n := copy(p, f.chunks[0])
	f.chunks[0] = f.chunks[0][n:]
	return n
}

func (f *feed) Read(p []byte) (int, error) {
	f.reads++
	c := f.next()
	if c == nil {
		return 0, f.end()
	}
	return f.take(p), nil
}

func (f *feed) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	f.wakes++
	c := f.next()
	if c == nil {
		if f.mode == failWithBuf {
			return pool.Get(size), 0, f.end()
		}
		return nil, 0, f.end()
	}
	want := min(size, len(c))
	switch f.mode {
	case full:
		buf := pool.Get(size)
		return buf, f.take((*buf)[:size]), nil
	case probe, probeLeak:
		first := pool.Get(1)
		buf := pool.Get(want)
		if f.mode == probe {
			pool.Put(first)
		}
		return buf, f.take((*buf)[:want]), nil
	}
	buf := pool.Get(want)
	return buf, f.take((*buf)[:want]), nil
}

// chunk cuts b into pieces of the given sizes, cycling.
func chunk(b []byte, sizes ...int) [][]byte {
	var out [][]byte
	for i := 0; len(b) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// countPool is a pool that records the largest Get and snoops on what
// comes back.
type countPool struct {
	*bufferpool.Tiered
	mu      sync.Mutex
	largest int
	marker  []byte // if set, Put counts buffers that contain it
	dirty   int
}

func newCountPool() *countPool {
	return &countPool{Tiered: bufferpool.NewTiered(bufferpool.WithDebug())}
}

func (p *countPool) Get(n int) *[]byte {
	p.mu.Lock()
	p.largest = max(p.largest, n)
	p.mu.Unlock()
	return p.Tiered.Get(n)
}

func (p *countPool) Put(b *[]byte) {
	if p.marker != nil && bytes.Contains((*b)[:cap(*b)], p.marker) {
		p.mu.Lock()
		p.dirty++
		p.mu.Unlock()
	}
	p.Tiered.Put(b)
}

func (p *countPool) inUse() int64 { return p.Stats().InUseBytes }

// newTestReader returns a Reader of testFormat over f with its own pool.
func newTestReader(f *feed) (*Reader, *countPool) {
	pool := newCountPool()
	r := new(Reader)
	r.Init(f, pool, &testFormat)
	return r, pool
}

// unseal is the test protocol's "decryption": it flips every byte of a
// record body in place.
func unseal(b []byte) {
	for i := range b {
		b[i] ^= 0x5a
	}
}

// sealed returns rec(b) with its body flipped, for unseal to restore.
func sealed(b []byte) []byte {
	b = bytes.Clone(b)
	unseal(b)
	return rec(b)
}

// drain runs a protocol over r until Fill fails: every record is opened in
// place and delivered in reads of deliver bytes. It returns the bodies
// delivered and Fill's error.
func drain(t testing.TB, r *Reader, deliver int) ([]byte, error) {
	t.Helper()
	var out []byte
	p := make([]byte, deliver)
	for {
		for len(r.Plain()) > 0 {
			n := r.Deliver(p)
			out = append(out, p[:n]...)
		}
		rec, err := r.Next()
		if err != nil {
			r.Release()
			return out, err
		}
		if rec == nil {
			r.ReleaseIfDrained()
			if err := r.Fill(); err != nil {
				if errors.Is(err, io.ErrNoProgress) {
					continue
				}
				r.Release()
				return out, err
			}
			continue
		}
		b := rec[testHeaderLen:]
		unseal(b)
		r.Opened()
		r.SetPlain(b)
		if len(b) == 0 {
			r.ReleaseIfDrained()
		}
	}
}

func requireIdle(t testing.TB, pool *countPool) {
	t.Helper()
	require.Zero(t, pool.inUse(), "pool bytes still held")
}
