package testnet_test

import (
	"io"
	"net"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/readyconn/readyconn/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// exchange sends a message each way between a and b.
func exchange(t *testing.T, a, b net.Conn) {
	t.Helper()
	for _, p := range [][2]net.Conn{{a, b}, {b, a}} {
		_, err := p[0].Write([]byte("ping"))
		require.NoError(t, err)
		buf := make([]byte, 4)
		_, err = io.ReadFull(p[1], buf)
		require.NoError(t, err)
		require.Equal(t, "ping", string(buf))
	}
}

func TestTCPPair(t *testing.T) {
	c, s := testnet.TCPPair(t)
	require.Equal(t, c.LocalAddr().String(), s.RemoteAddr().String())
	exchange(t, c, s)
	// Closing early is fine; Cleanup closes again.
	require.NoError(t, c.Close())
	_, err := s.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
}

func TestUnixPair(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("no unix sockets on " + runtime.GOOS)
	}
	c, s := testnet.UnixPair(t)
	exchange(t, c, s)
}
