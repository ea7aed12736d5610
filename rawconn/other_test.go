//go:build !unix

package rawconn_test

import (
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/rawconn"
)

func TestNewUnsupported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	r, err := rawconn.New(c.(*net.TCPConn))
	require.Nil(t, r)
	require.ErrorIs(t, err, errors.ErrUnsupported)
	require.ErrorIs(t, err, rawconn.ErrUnsupported)
}
