package record

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tlsRec returns a TLS record of content type typ with body.
func tlsRec(typ byte, body string) []byte {
	return append([]byte{typ, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

// memConn is a net.Conn that reads from an io.Reader and records writes.
type memConn struct {
	r   io.Reader
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}
func (*memConn) Close() error                     { return nil }
func (*memConn) LocalAddr() net.Addr              { return nil }
func (*memConn) RemoteAddr() net.Addr             { return nil }
func (*memConn) SetDeadline(time.Time) error      { return nil }
func (*memConn) SetReadDeadline(time.Time) error  { return nil }
func (*memConn) SetWriteDeadline(time.Time) error { return nil }

// TestHandshakeConnRecordBoundaries checks that reads never return a byte
// past the end of the TLS record being read, with reads of every size.
func TestHandshakeConnRecordBoundaries(t *testing.T) {
	stream := bytes.Join([][]byte{tlsRec(22, "hello"), tlsRec(23, ""), tlsRec(23, "world!"), tlsRec(21, "ab")}, nil)
	const after = "ALTS-FRAME"
	stream = append(stream, after...)
	want := len(stream) - len(after)
	for _, size := range []int{1, 3, 5, 7, 100} {
		src := bytes.NewReader(stream)
		h := NewHandshakeConn(&memConn{r: src}, true)
		var got []byte
		for len(got) < want {
			buf := make([]byte, size)
			n, err := h.Read(buf)
			require.NoError(t, err)
			require.Positive(t, n)
			got = append(got, buf[:n]...)
		}
		assert.Equal(t, stream[:want], got, "size %d", size)
		assert.Equal(t, len(after), src.Len(), "size %d: bytes after the last record were consumed", size)
		assert.True(t, h.Between())
		assert.False(t, h.Overflow())
		require.Len(t, h.ReadRecords(), 4)
		assert.Equal(t, tlsRec(23, "world!"), h.ReadRecords()[2])
		n, err := h.Read(nil)
		assert.Zero(t, n)
		assert.NoError(t, err)
	}
}

// TestHandshakeConnTruncated checks that a stream ending inside a record is
// io.ErrUnexpectedEOF, and that what arrived is handed over first.
func TestHandshakeConnTruncated(t *testing.T) {
	t.Run("body", func(t *testing.T) {
		h := NewHandshakeConn(&memConn{r: bytes.NewReader(tlsRec(22, "hello")[:8])}, false)
		buf := make([]byte, 100)
		n, err := h.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, 5, n)
		n, err = h.Read(buf)
		assert.Equal(t, 3, n)
		if err == nil {
			_, err = h.Read(buf)
		}
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
		assert.False(t, h.Between())
	})
	t.Run("header", func(t *testing.T) {
		h := NewHandshakeConn(&memConn{r: bytes.NewReader([]byte{22, 3})}, false)
		buf := make([]byte, 100)
		n, err := h.Read(buf)
		assert.Equal(t, 2, n)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	})
	t.Run("clean EOF", func(t *testing.T) {
		h := NewHandshakeConn(&memConn{r: bytes.NewReader(nil)}, false)
		n, err := h.Read(make([]byte, 10))
		assert.Zero(t, n)
		assert.ErrorIs(t, err, io.EOF)
		assert.True(t, h.Between())
	})
}

// stepReader returns its chunks one per Read, then err.
type stepReader struct {
	chunks [][]byte
	err    error
}

func (s *stepReader) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, s.err
	}
	n := copy(p, s.chunks[0])
	s.chunks[0] = s.chunks[0][n:]
	if len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

// TestHandshakeConnDeadlineInHeader checks that a deadline in the middle
// of a header hands over the part that arrived with the error, and that
// the read goes on once more arrives.
func TestHandshakeConnDeadlineInHeader(t *testing.T) {
	r := tlsRec(22, "hi")
	sr := &stepReader{chunks: [][]byte{r[:2]}, err: os.ErrDeadlineExceeded}
	h := NewHandshakeConn(&memConn{r: sr}, true)
	buf := make([]byte, 100)
	n, err := h.Read(buf)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Equal(t, r[:2], buf[:n])
	sr.chunks = [][]byte{r[2:]}
	var got []byte
	got = append(got, r[:2]...)
	for len(got) < len(r) {
		n, err := h.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
	}
	require.Equal(t, r, got)
	require.True(t, h.Between())
	require.Equal(t, [][]byte{r}, h.ReadRecords())
}

// TestHandshakeConnOversized checks that a header announcing more than any
// TLS version allows is handed over (so crypto/tls sends the right alert)
// but its body is never read.
func TestHandshakeConnOversized(t *testing.T) {
	src := bytes.NewReader(append([]byte{23, 3, 3, 0xff, 0xff}, make([]byte, 100)...))
	h := NewHandshakeConn(&memConn{r: src}, false)
	buf := make([]byte, 100)
	n, err := h.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	_, err = h.Read(buf)
	assert.ErrorIs(t, err, errRecordTooLarge)
	_, err = h.Read(buf)
	assert.ErrorIs(t, err, errRecordTooLarge, "sticky")
	assert.Equal(t, 100, src.Len())

	// The largest allowed body is read.
	big := append([]byte{23, 3, 3, MaxTLSRecordLen >> 8, MaxTLSRecordLen & 0xff}, make([]byte, MaxTLSRecordLen)...)
	h = NewHandshakeConn(&memConn{r: bytes.NewReader(big)}, false)
	got, err := io.ReadAll(io.LimitReader(h, int64(len(big))))
	require.NoError(t, err)
	assert.Len(t, got, len(big))
}

// TestHandshakeConnCaptureWrites checks that written bytes are cut into
// records however they are split, and that Between sees a write that does
// not end a record.
func TestHandshakeConnCaptureWrites(t *testing.T) {
	recs := [][]byte{tlsRec(22, "client hello"), tlsRec(20, "\x01"), tlsRec(23, "finished")}
	all := bytes.Join(recs, nil)
	boundary := map[int]bool{0: true}
	for i, off := 0, 0; i < len(recs); i++ {
		off += len(recs[i])
		boundary[off] = true
	}
	for _, size := range []int{1, 4, 6, 13, len(all)} {
		mc := &memConn{r: bytes.NewReader(nil)}
		h := NewHandshakeConn(mc, true)
		for off := 0; off < len(all); {
			k := min(size, len(all)-off)
			n, err := h.Write(all[off : off+k])
			require.NoError(t, err)
			require.Equal(t, k, n)
			off += k
			assert.Equal(t, boundary[off], h.Between(), "size %d, after %d bytes", size, off)
		}
		assert.Equal(t, recs, h.WrittenRecords(), "size %d", size)
		assert.Equal(t, all, mc.out.Bytes())
		assert.True(t, h.Between())
		_, err := h.Write(all[:3])
		require.NoError(t, err)
		assert.False(t, h.Between(), "a record half written")
	}
}

// TestHandshakeConnCaptureOverflow checks that capture stops, and says so,
// once more than 1 MiB went through.
func TestHandshakeConnCaptureOverflow(t *testing.T) {
	body := string(make([]byte, MaxTLSRecordLen))
	var stream []byte
	for len(stream) <= maxCapture {
		stream = append(stream, tlsRec(23, body)...)
	}
	h := NewHandshakeConn(&memConn{r: bytes.NewReader(stream)}, true)
	got, err := io.ReadAll(h)
	require.NoError(t, err)
	require.Equal(t, stream, got)
	assert.True(t, h.Overflow())
	assert.Empty(t, h.ReadRecords())
	_, err = h.Write(tlsRec(22, "x"))
	require.NoError(t, err)
	assert.Empty(t, h.WrittenRecords(), "nothing is captured after an overflow")
}

// TestHandshakeConnStopCapture checks that StopCapture drops the copies.
func TestHandshakeConnStopCapture(t *testing.T) {
	h := NewHandshakeConn(&memConn{r: bytes.NewReader(tlsRec(22, "a"))}, true)
	_, err := io.ReadAll(h)
	require.NoError(t, err)
	require.Len(t, h.ReadRecords(), 1)
	h.StopCapture()
	assert.Empty(t, h.ReadRecords())
	_, err = h.Write(tlsRec(22, "b"))
	require.NoError(t, err)
	assert.Empty(t, h.WrittenRecords())
}

// TestHandshakeConnFeed checks feed mode: fed records are read instead of
// the connection, then ErrFeedDrained (a temporary timeout), and EndFeed
// returns to the connection.
func TestHandshakeConnFeed(t *testing.T) {
	src := bytes.NewReader(tlsRec(23, "from the connection"))
	h := NewHandshakeConn(&memConn{r: src}, false)
	fed := bytes.Join([][]byte{tlsRec(22, "ticket one"), tlsRec(22, "ticket two")}, nil)
	h.Feed(fed)
	var got []byte
	buf := make([]byte, 7)
	var err error
	for {
		var n int
		n, err = h.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	require.ErrorIs(t, err, ErrFeedDrained)
	require.Equal(t, fed, got)
	var ne net.Error
	require.True(t, errors.As(err, &ne))
	assert.True(t, ne.Timeout())
	assert.True(t, ErrFeedDrained.(interface{ Temporary() bool }).Temporary())
	assert.NotEmpty(t, ErrFeedDrained.Error())
	// Feeding again works; then back to the connection.
	h.Feed(tlsRec(22, "3"))
	n, err := h.Read(make([]byte, 100))
	require.NoError(t, err)
	assert.Equal(t, 6, n)
	h.EndFeed()
	rest, err := io.ReadAll(h)
	require.NoError(t, err)
	assert.Equal(t, tlsRec(23, "from the connection"), rest)
}

// TestHandshakeConnPassthrough checks that after Passthrough reads and
// writes go straight to the connection, across records, uncaptured.
func TestHandshakeConnPassthrough(t *testing.T) {
	stream := bytes.Join([][]byte{tlsRec(23, "one"), tlsRec(23, "two")}, nil)
	mc := &memConn{r: bytes.NewReader(stream)}
	h := NewHandshakeConn(mc, true)
	h.Passthrough()
	buf := make([]byte, 100)
	n, err := h.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, len(stream), n, "one read across records")
	_, err = h.Write([]byte("raw"))
	require.NoError(t, err)
	assert.Equal(t, "raw", mc.out.String())
	assert.Empty(t, h.ReadRecords())
	assert.Empty(t, h.WrittenRecords())
}
