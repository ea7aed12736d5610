//go:build !unix

package rawconn_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/rawconn"
)

func TestNewUnsupported(t *testing.T) {
	c, _ := testnet.TCPPair(t)
	r, err := rawconn.New(c)
	require.Nil(t, r)
	require.ErrorIs(t, err, errors.ErrUnsupported)
	require.ErrorIs(t, err, rawconn.ErrUnsupported)
}
