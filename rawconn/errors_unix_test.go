//go:build unix

package rawconn_test

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/rawconn"
)

// requireOpError checks that err is a *net.OpError for a read on c, as the
// net package builds it.
func requireOpError(t *testing.T, err error, c net.Conn) *net.OpError {
	t.Helper()
	var op *net.OpError
	require.ErrorAs(t, err, &op)
	require.Equal(t, "read", op.Op)
	require.Equal(t, c.LocalAddr().Network(), op.Net)
	require.Equal(t, c.LocalAddr(), op.Source)
	require.Equal(t, c.RemoteAddr(), op.Addr)
	return op
}

// TestErrorsLikeNetConn checks that a deadline and a closed connection
// come back exactly as the connection's own Read reports them: same type,
// same Op, same addresses, same text, and errors.Is works.
func TestErrorsLikeNetConn(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			rc, _ := pair(t, network)
			pool := debugPool()
			r, err := rawconn.New(rc)
			require.NoError(t, err)

			require.NoError(t, rc.SetReadDeadline(time.Now().Add(-time.Second)))
			_, want := rc.Read(make([]byte, 10))
			_, _, got := r.ReadOnReady(4096, pool)
			require.Equal(t, want.Error(), got.Error())
			requireOpError(t, got, rc)
			require.ErrorIs(t, got, os.ErrDeadlineExceeded)
			var timeout interface{ Timeout() bool }
			require.ErrorAs(t, got, &timeout)
			require.True(t, timeout.Timeout())
			require.NoError(t, rc.SetReadDeadline(time.Time{}))

			require.NoError(t, rc.Close())
			_, want = rc.Read(make([]byte, 10))
			_, _, got = r.ReadOnReady(4096, pool)
			require.Equal(t, want.Error(), got.Error())
			requireOpError(t, got, rc)
			require.ErrorIs(t, got, net.ErrClosed)
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

// TestResetLikeNetConn compares a peer reset seen through rawconn with the
// same event seen by net.Conn.Read on another connection.
func TestResetLikeNetConn(t *testing.T) {
	reset := func(rc, wc conn, read func() error) error {
		done := make(chan error, 1)
		go func() { done <- read() }()
		require.NoError(t, wc.(*net.TCPConn).SetLinger(0))
		require.NoError(t, wc.Close())
		return <-done
	}
	rc1, wc1 := pair(t, "tcp")
	want := reset(rc1, wc1, func() error {
		_, err := rc1.Read(make([]byte, 10))
		return err
	})
	rc2, wc2 := pair(t, "tcp")
	r, err := rawconn.New(rc2)
	require.NoError(t, err)
	pool := debugPool()
	got := reset(rc2, wc2, func() error {
		_, _, err := r.ReadOnReady(4096, pool)
		return err
	})
	require.ErrorIs(t, want, syscall.ECONNRESET, "precondition: the reset reaches net.Conn.Read")
	require.ErrorIs(t, got, syscall.ECONNRESET)
	op := requireOpError(t, got, rc2)
	var se *os.SyscallError
	require.ErrorAs(t, op.Err, &se)
	require.Equal(t, "read", se.Syscall)
	addrs := func(c net.Conn) string { return c.LocalAddr().String() + "->" + c.RemoteAddr().String() }
	require.Equal(t, strings.Replace(want.Error(), addrs(rc1), addrs(rc2), 1), got.Error())
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestReadErrorUnixAddresses checks the addresses of a read error on a unix
// socket, whose dialing end has an unnamed local address.
func TestReadErrorUnixAddresses(t *testing.T) {
	restore := rawconn.SetSyscalls(func(int, []byte) (int, error) { return 0, syscall.EIO }, nil)
	defer restore()
	c, s := testnet.UnixPair(t)
	for _, uc := range []*net.UnixConn{c, s} {
		r, err := rawconn.New(uc)
		require.NoError(t, err)
		_, _, err = r.ReadOnReady(100, debugPool())
		require.ErrorIs(t, err, syscall.EIO)
		op := requireOpError(t, err, uc)
		require.Equal(t, "unix", op.Net)
	}
}

// TestFileErrorsLikeOSFile checks that a pipe read through rawconn fails
// as os.File.Read does: *os.PathError with the file's name.
func TestFileErrorsLikeOSFile(t *testing.T) {
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pw.Close()
	r, err := rawconn.New(pr)
	require.NoError(t, err)
	pool := debugPool()

	require.NoError(t, pr.SetReadDeadline(time.Now().Add(-time.Second)))
	_, want := pr.Read(make([]byte, 10))
	_, _, got := r.ReadOnReady(4096, pool)
	require.Equal(t, want.Error(), got.Error())
	var pe *os.PathError
	require.ErrorAs(t, got, &pe)
	require.Equal(t, pr.Name(), pe.Path)
	require.ErrorIs(t, got, os.ErrDeadlineExceeded)
	require.NoError(t, pr.SetReadDeadline(time.Time{}))

	restore := rawconn.SetSyscalls(func(int, []byte) (int, error) { return 0, syscall.EIO }, nil)
	_, _, got = r.ReadOnReady(4096, pool)
	restore()
	require.ErrorAs(t, got, &pe)
	require.Equal(t, "read", pe.Op)
	require.ErrorIs(t, got, syscall.EIO)

	require.NoError(t, pr.Close())
	_, want = pr.Read(make([]byte, 10))
	_, _, got = r.ReadOnReady(4096, pool)
	require.Equal(t, want.Error(), got.Error())
	require.ErrorIs(t, got, os.ErrClosed)
	require.Zero(t, pool.Stats().InUseBytes)
}

// plainConn is a syscall.Conn that is neither a net.Conn nor an *os.File.
type plainConn struct{ c syscall.Conn }

func (p plainConn) SyscallConn() (syscall.RawConn, error) { return p.c.SyscallConn() }

func TestReadErrorOtherConn(t *testing.T) {
	restore := rawconn.SetSyscalls(func(int, []byte) (int, error) { return 0, syscall.EIO }, nil)
	defer restore()
	rc, _ := pair(t, "tcp")
	r, err := rawconn.New(plainConn{rc})
	require.NoError(t, err)
	_, _, err = r.ReadOnReady(100, debugPool())
	var se *os.SyscallError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, syscall.EIO)
	var op *net.OpError
	require.False(t, errors.As(err, &op))
}

func TestErrInvalidSizeSentinel(t *testing.T) {
	rc, _ := pair(t, "tcp")
	r, err := rawconn.New(rc)
	require.NoError(t, err)
	_, _, err = r.ReadOnReady(0, bufferpool.NewTiered())
	require.Same(t, rawconn.ErrInvalidSize, err)
	require.NotErrorIs(t, err, io.EOF)
}
