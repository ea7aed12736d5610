//go:build unix

package main

import (
	"io"
	"sync"
	"syscall"
)

// floorEnd is the floor mode's side of a connection: a goroutine parked in
// syscall.RawConn.Read, holding no buffer. When the socket becomes readable
// the callback reads into an array on its own stack (or, for messages larger
// than that array, a scratch buffer it holds only during the call).
type floorEnd struct {
	rawEnd
	want int   // bytes the next read may take
	n    int   // result of the last read
	err  error // result of the last read
	fn   func(fd uintptr) bool
}

func newFloorEnd(r rawEnd) *floorEnd {
	f := &floorEnd{rawEnd: r}
	f.fn = f.readFD
	return f
}

// readFD is the RawConn callback. It reports false (wait for readability)
// when the socket has nothing to read.
func (f *floorEnd) readFD(fd uintptr) bool {
	if f.want > appBufLen {
		return f.readScratch(fd)
	}
	var b [appBufLen]byte
	for {
		n, err := syscall.Read(int(fd), b[:f.want])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK {
			return false
		}
		f.n, f.err = n, err
		return true
	}
}

// scratch holds the buffers readScratch reads large messages into.
var scratch = sync.Pool{New: func() any { return new([64 << 10]byte) }}

// readScratch is readFD for reads larger than its stack array; the scratch
// buffer is held only for the call.
func (f *floorEnd) readScratch(fd uintptr) bool {
	b := scratch.Get().(*[64 << 10]byte)
	defer scratch.Put(b)
	for {
		n, err := syscall.Read(int(fd), b[:min(f.want, len(b))])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK {
			return false
		}
		f.n, f.err = n, err
		return true
	}
}

func (f *floorEnd) recv() error {
	msgLen := len(f.msg)
	for got := 0; got < msgLen; got += f.n {
		f.want = msgLen - got
		if err := f.rc.Read(f.fn); err != nil {
			return err
		}
		if f.err != nil {
			return f.err
		}
		if f.n == 0 {
			if got > 0 {
				return io.ErrUnexpectedEOF
			}
			return io.EOF
		}
	}
	return nil
}
