package cputime_test

import (
	"crypto/sha256"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/readyconn/readyconn/benchmarks/internal/cputime"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestProcessAdvances checks that the clock moves with work done.
func TestProcessAdvances(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" && runtime.GOOS != "windows" && runtime.GOOS != "freebsd" {
		t.Skip("no process CPU clock expected on " + runtime.GOOS)
	}
	before, ok := cputime.Process()
	require.True(t, ok)
	var sum [32]byte
	for range 200000 {
		sum = sha256.Sum256(sum[:])
	}
	after, ok := cputime.Process()
	require.True(t, ok)
	require.Greater(t, after, before)
}

func BenchmarkSHA256(b *testing.B) {
	var sum [32]byte
	b.ResetTimer()
	defer cputime.Start(b).Stop()
	for range b.N {
		sum = sha256.Sum256(sum[:])
	}
}
