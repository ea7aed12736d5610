package record

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// trickleWriter takes at most n bytes per Write, then fails with err once
// its budget is spent (or returns (0, nil) when err is nil).
type trickleWriter struct {
	bytes.Buffer
	per, budget int
	err         error
}

func (w *trickleWriter) Write(p []byte) (int, error) {
	k := min(len(p), w.per, w.budget)
	w.budget -= k
	w.Buffer.Write(p[:k])
	if k < len(p) && w.budget == 0 {
		return k, w.err
	}
	return k, nil
}

var errWrite = errors.New("write failed")

func TestPending(t *testing.T) {
	pool := newCountPool()
	var p Pending
	require.True(t, p.Empty())
	require.NoError(t, p.Flush(io.Discard, pool), "nothing pending")

	// Nothing left to send: the buffer goes back at once.
	buf := pool.Get(100)
	p.Keep(pool, buf, 100, 100)
	require.True(t, p.Empty())
	requireIdle(t, pool)

	// The rest of a record goes out in pieces; an error keeps what did
	// not go out.
	buf = pool.Get(100)
	copy(*buf, body(1, 100))
	p.Keep(pool, buf, 40, 100)
	require.False(t, p.Empty())
	w := &trickleWriter{per: 7, budget: 20, err: errWrite}
	require.ErrorIs(t, p.Flush(w, pool), errWrite)
	require.False(t, p.Empty())
	w.budget = 1000
	require.NoError(t, p.Flush(w, pool))
	require.True(t, p.Empty())
	require.Equal(t, body(1, 100)[40:], w.Bytes())
	requireIdle(t, pool)

	// A writer that takes nothing and reports nothing.
	buf = pool.Get(10)
	p.Keep(pool, buf, 0, 10)
	require.ErrorIs(t, p.Flush(&trickleWriter{per: 5, budget: 0}, pool), io.ErrShortWrite)
	require.False(t, p.Empty())
	p.Release(pool)
	require.True(t, p.Empty())
	p.Release(pool) // again: nothing
	requireIdle(t, pool)

	// An error that comes with the last bytes: they are sent, the buffer
	// goes back, the error is reported.
	buf = pool.Get(10)
	p.Keep(pool, buf, 0, 10)
	require.ErrorIs(t, p.Flush(&errLastWriter{}, pool), errWrite)
	require.True(t, p.Empty())
	requireIdle(t, pool)
}

type errLastWriter struct{}

func (errLastWriter) Write(p []byte) (int, error) { return len(p), errWrite }
