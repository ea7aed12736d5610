package framing

import (
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hx decodes hex with spaces; parts in quotes are not supported, use + "text".
func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// chunkConn is a readyreader.Reader (and io.Reader) over fixed data that
// delivers it in chunks of the given sizes (cycled), then returns final
// (io.EOF if nil). It counts reads.
type chunkConn struct {
	data   []byte
	chunks []int
	i      int
	final  error
	reads  int
	sizes  []int // sizes asked for
}

func (c *chunkConn) next(size int) int {
	n := min(size, len(c.data))
	if len(c.chunks) > 0 {
		n = min(n, c.chunks[c.i%len(c.chunks)])
		c.i++
	}
	return n
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.end()
	}
	n := copy(p, c.data[:c.next(len(p))])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) end() error {
	if c.final != nil {
		return c.final
	}
	return io.EOF
}

func (c *chunkConn) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	c.reads++
	c.sizes = append(c.sizes, size)
	if len(c.data) == 0 {
		return nil, 0, c.end()
	}
	buf := pool.Get(size)
	n := copy(*buf, c.data[:c.next(size)])
	c.data = c.data[n:]
	return buf, n, nil
}

func newDebugPool() *bufferpool.Tiered { return bufferpool.NewTiered(bufferpool.WithDebug()) }

// readAll reads frames until an error, copying each frame.
func readAll(t testing.TB, r *Reader) ([][]byte, error) {
	t.Helper()
	var out [][]byte
	for {
		f, err := r.ReadFrame()
		if err != nil {
			require.Nil(t, f.Bytes())
			return out, err
		}
		out = append(out, append([]byte{}, f.Bytes()...))
		f.Release()
	}
}

// readAllInto reads frames with ReadFrameInto, reusing one buffer.
func readAllInto(t testing.TB, r *Reader) ([][]byte, error) {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 0, 7)
	for {
		var err error
		buf, err = r.ReadFrameInto(buf)
		if err != nil {
			require.Empty(t, buf)
			return out, err
		}
		out = append(out, append([]byte{}, buf...))
	}
}

// errClass maps an error to the class the reference decoder reports.
func errClass(err error) string {
	switch {
	case err == nil:
		return "nil"
	case err == io.EOF:
		return "EOF"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "UnexpectedEOF"
	case errors.Is(err, ErrFrameTooLarge):
		return "TooLarge"
	case errors.Is(err, ErrInvalidLength):
		return "Invalid"
	}
	return "other: " + err.Error()
}

var leOrder = binaryLittle()
