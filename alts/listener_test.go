package alts

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flakyListener fails its first fails Accepts with EMFILE, as a listener
// does while the process is out of file descriptors.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestListenerRetriesTransientErrors checks that running out of file
// descriptors for a moment does not kill the listener.
func TestListenerRetriesTransientErrors(t *testing.T) {
	a, _ := hsPKIs(t)
	fl := &flakyListener{Listener: hsListen(t)}
	fl.fails.Store(3)
	ln := NewListener(fl, a.ServerConfig(false))
	defer ln.Close()
	dialed := make(chan error, 1)
	go func() {
		c, err := Dial("tcp", ln.Addr().String(), hsClientConfig(a, false))
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	c, err := ln.Accept()
	require.NoError(t, err, "the listener died after a transient Accept error")
	c.Close()
	require.NoError(t, <-dialed)
	require.Negative(t, fl.fails.Load())
}

// hsFailingListener fails every Accept with an error that never passes.
type hsFailingListener struct{ net.Listener }

var errHsBroken = errors.New("listener broke")

func (hsFailingListener) Accept() (net.Conn, error) { return nil, errHsBroken }

// TestListenerInnerError checks that errors of the inner listener are
// retried with a growing pause and reported to AcceptError, never returned
// by Accept, which ends with Close.
func TestListenerInnerError(t *testing.T) {
	a, _ := hsPKIs(t)
	inner := hsListen(t)
	type report struct {
		err   error
		pause time.Duration
	}
	reports := make(chan report, 100)
	lc := ListenConfig{AcceptError: func(err error, pause time.Duration) {
		select {
		case reports <- report{err, pause}:
		default:
		}
	}}
	ln := lc.NewListener(hsFailingListener{inner}, a.ServerConfig(false))
	accepted := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	want := minAcceptBackoff
	for range 3 {
		r := <-reports
		assert.ErrorIs(t, r.err, errHsBroken)
		assert.Equal(t, want, r.pause)
		want *= 2
	}
	require.NoError(t, ln.Close())
	assert.ErrorIs(t, <-accepted, net.ErrClosed)
}

func TestNextBackoff(t *testing.T) {
	var got []time.Duration
	var d time.Duration
	for range 10 {
		d = nextBackoff(d)
		got = append(got, d)
	}
	ms := time.Millisecond
	assert.Equal(t, []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second}, got)
}

// TestListenerInnerClosed closes the inner listener under the listener:
// Accept reports that, for good, instead of retrying.
func TestListenerInnerClosed(t *testing.T) {
	a, _ := hsPKIs(t)
	inner := hsListen(t)
	ln := NewListener(inner, a.ServerConfig(false))
	require.NoError(t, inner.Close())
	_, err := ln.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = ln.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorIs(t, ln.Close(), net.ErrClosed, "Close reports inner's error")
}
