package record

import (
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/internal/stacktest"
)

// deepJob uses about n bytes of stack.
type deepJob struct {
	n   int
	err error
	ran bool
}

//go:noinline
func deep(n int) byte {
	var pad [256]byte
	pad[n%256] = byte(n)
	if n > 256 {
		return deep(n-256) + pad[0]
	}
	return pad[1]
}

func (d *deepJob) Run() error {
	deep(d.n)
	d.ran = true
	return d.err
}

func TestOnFreshStack(t *testing.T) {
	j := &deepJob{n: 1 << 14, err: errors.New("job error")}
	assert.Equal(t, j.err, OnFreshStack(j))
	assert.True(t, j.ran)

	// Many at once, more than the queue holds.
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j := &deepJob{n: 4096}
			require.NoError(t, OnFreshStack(j))
			require.True(t, j.ran)
		}()
	}
	wg.Wait()
}

// TestStackOnFreshStack checks that deep work run through OnFreshStack does
// not grow the caller's 2 KiB stack, while the same work run directly does.
func TestStackOnFreshStack(t *testing.T) {
	if !stacktest.InChild(t) {
		return
	}
	j := &deepJob{n: 8192}
	assert.True(t, stacktest.Grew(0, func() { _ = j.Run() }))
	assert.False(t, stacktest.Grew(150, func() { _ = OnFreshStack(j) }))
}
