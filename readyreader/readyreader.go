// Package readyreader defines ReadyReader, the interface through which every
// layer of readyconn reads without pinning a buffer while it waits.
package readyreader

import (
	"io"

	"github.com/readyconn/readyconn/bufferpool"
)

// Reader reads into a buffer that it takes from a pool only once data is
// there to read.
type Reader interface {
	// ReadOnReady waits until data can be read, then takes a buffer of
	// size bytes from pool and reads into it. It holds no buffer while
	// waiting. The caller owns the returned buffer (nil when n == 0) and
	// must Put it back to pool. n > 0 bytes must be processed before err is
	// considered.
	ReadOnReady(size int, pool bufferpool.Pool) (buf *[]byte, n int, err error)
}

// New returns a Reader for r. (Temporary: blocking fallback only.)
func New(r io.Reader) Reader {
	if rr, ok := r.(Reader); ok {
		return rr
	}
	return &blocking{r: r}
}

type blocking struct{ r io.Reader }

func (b *blocking) ReadOnReady(size int, pool bufferpool.Pool) (*[]byte, int, error) {
	buf := pool.Get(size)
	n, err := b.r.Read(*buf)
	if n == 0 {
		pool.Put(buf)
		if err == nil {
			err = io.ErrNoProgress
		}
		return nil, 0, err
	}
	return buf, n, err
}
