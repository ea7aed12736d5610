package stacktest_test

import (
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/readyconn/readyconn/internal/stacktest"
	"github.com/readyconn/readyconn/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// deep uses about n bytes of stack.
//
//go:noinline
func deep(n int) byte {
	var pad [256]byte
	pad[n%256] = byte(n)
	if n > 256 {
		return deep(n-256) + pad[0]
	}
	return pad[1]
}

func TestStackGrew(t *testing.T) {
	if !stacktest.InChild(t) {
		return
	}
	require.True(t, stacktest.FixedStart())
	// Nothing deep: the stack stays.
	assert.False(t, stacktest.Grew(128, func() {}))
	// A burn beyond the 2 KiB stack grows it.
	assert.True(t, stacktest.Grew(2048, func() {}))
	// So does a deep f.
	assert.True(t, stacktest.Grew(128, func() { deep(4096) }))
}

// TestStackGrewParked runs the check the library's tests run: a read that wakes,
// and one that parks in the poller until the peer closes.
func TestStackGrewParked(t *testing.T) {
	if !stacktest.InChild(t) {
		return
	}
	a, b := testnet.TCPPair(t)
	_, err := b.Write([]byte("x"))
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		testnet.WaitParked(t, "net.(*conn).Read")
		b.Close()
	}()
	grew := stacktest.Grew(256, func() {
		var p [1]byte
		_, err := a.Read(p[:])
		if err != nil {
			panic(err)
		}
		_, err = a.Read(p[:]) // parks until b closes
		if err != io.EOF {
			panic(err)
		}
	})
	<-done
	assert.False(t, grew, "a plain net.Conn read with 256 B burnt should fit in 2 KiB")
	var _ net.Conn = a
}
