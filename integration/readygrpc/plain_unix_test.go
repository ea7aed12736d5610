//go:build unix && !linux

package readygrpc

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/mem"

	"github.com/readyconn/readyconn/bufferpool"
)

// TestWrapConnUnix checks that on a Unix other than Linux, where grpc-go
// reads every connection through a bufio.Reader, Listener and Dialer give
// TCP connections the ReadOnReady method grpc-go looks for, keep the
// socket reachable for channelz, and read the right bytes.
func TestWrapConnUnix(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer lis.Close()
	l := Listener(lis)
	dc, err := Dialer(nil, "tcp")(opCtx(t), lis.Addr().String())
	require.NoError(t, err)
	defer dc.Close()
	sc, err := l.Accept()
	require.NoError(t, err)
	defer sc.Close()
	type readyReader interface {
		ReadOnReady(int, mem.BufferPool) (*[]byte, int, error)
	}
	for _, c := range []net.Conn{dc, sc} {
		_, ok := c.(readyReader)
		require.True(t, ok, "%T has no ReadOnReady", c)
		sc, ok := c.(syscall.Conn)
		require.True(t, ok, "%T has no SyscallConn", c)
		_, err := sc.SyscallConn()
		require.NoError(t, err)
	}
	_, err = dc.Write([]byte("hello"))
	require.NoError(t, err)
	pool := bufferpool.NewTiered()
	buf, n, err := sc.(readyReader).ReadOnReady(64, pool)
	require.NoError(t, err)
	assert.Equal(t, "hello", string((*buf)[:n]))
	pool.Put(buf)
	assert.Zero(t, pool.Stats().InUseBytes)
}
