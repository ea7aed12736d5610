package record

import (
	"io"

	"github.com/readyconn/readyconn/bufferpool"
)

// Pending is ciphertext that a write left half sent: the rest of a record
// whose first bytes reached the connection before the write failed (a
// deadline, typically). The stream is consistent again only once those
// bytes follow, so they go out before anything else. The zero value holds
// nothing.
//
// A layer whose write failed before any byte of a record reached the
// connection does not keep that record: it undoes the sealing (rewinds its
// sequence number), which is safe because the ciphertext was never seen.
type Pending struct {
	buf      *[]byte
	off, end int
}

// Empty reports whether nothing is pending.
func (p *Pending) Empty() bool { return p.buf == nil }

// Keep takes ownership of buf, a buffer from pool, and keeps (*buf)[off:end]
// as the pending bytes; with off == end it puts buf back at once.
func (p *Pending) Keep(pool bufferpool.Pool, buf *[]byte, off, end int) {
	if off >= end {
		pool.Put(buf)
		return
	}
	p.buf, p.off, p.end = buf, off, end
}

// Flush writes the pending bytes to w. On error it keeps what did not go
// out and returns the error; once everything is written the buffer goes
// back to pool.
func (p *Pending) Flush(w io.Writer, pool bufferpool.Pool) error {
	for p.buf != nil {
		n, err := w.Write((*p.buf)[p.off:p.end])
		p.off += n
		if p.off >= p.end {
			p.Release(pool)
			return err
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
	}
	return nil
}

// Release drops the pending bytes and puts their buffer back to pool.
func (p *Pending) Release(pool bufferpool.Pool) {
	if p.buf != nil {
		pool.Put(p.buf)
	}
	*p = Pending{}
}
