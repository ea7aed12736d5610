//go:build !unix

package main

import "io"

// floorEnd is the floor mode's side of a connection: a goroutine parked in
// syscall.RawConn.Read, holding no buffer. On systems without the Unix
// non-blocking read path (Windows) RawConn.Read waits with a zero-byte read
// and calls the callback again once data is there; the message is then read
// through the net.Conn into a buffer that lives only for that call.
type floorEnd struct {
	rawEnd
	woke bool
	fn   func(fd uintptr) bool
}

func newFloorEnd(r rawEnd) *floorEnd {
	f := &floorEnd{rawEnd: r}
	f.fn = f.ready
	return f
}

// ready reports false on its first call (wait) and true on the next one.
func (f *floorEnd) ready(uintptr) bool {
	if f.woke {
		return true
	}
	f.woke = true
	return false
}

func (f *floorEnd) recv() error {
	f.woke = false
	if err := f.rc.Read(f.fn); err != nil {
		return err
	}
	return f.readMessage()
}

// readMessage is kept out of recv so that its buffer does not live while
// recv waits.
func (f *floorEnd) readMessage() error {
	b := make([]byte, len(f.msg))
	_, err := io.ReadFull(f.c, b)
	return err
}
