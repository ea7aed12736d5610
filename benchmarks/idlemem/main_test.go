package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// measureInChild re-runs the current executable; in tests that is the
	// test binary, which then acts as the child.
	if req := os.Getenv(childEnv); req != "" {
		os.Exit(childMain(req, os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// testN is small so that every mode runs in well under a second, also with
// the race detector.
const testN = 20

// testOptions are defaultOptions with a smaller burst, for speed.
var testOptions = options{Msg: defaultOptions.Msg, Burst: 128 << 10}

// TestModes runs every mode in the table with a small N, each in a child
// process as the command does, and checks the machinery: a positive cost
// per connection, a reader on every end, and an idle readyconn pool that
// holds exactly nothing. (The child itself fails if a goroutine of the mode
// outlives tear-down or the pool is not empty after it.) It also checks
// that the measurement sees memory where it must: a 32 KiB bufio.Reader on
// each end is at least 64 KiB of heap per connection, and the floor is far
// below that.
func TestModes(t *testing.T) {
	got := map[string]result{}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			var stderr bytes.Buffer
			r, err := measureInChild(childRequest{Mode: m.name, N: testN, Options: testOptions}, true, &stderr)
			require.NoError(t, err, stderr.String())
			assert.Equal(t, m.name, r.Mode)
			assert.Equal(t, testN, r.N)
			assert.Equal(t, uint64(2048), r.StackStartBytes, "the child pins the goroutine start size")
			assert.Positive(t, r.StackPerConn, "stack per connection")
			assert.Positive(t, r.TotalPerConn, "total per connection")
			assert.InDelta(t, r.HeapPerConn+r.StackPerConn, r.TotalPerConn, 1e-9)
			if strings.HasPrefix(m.name, "grpc") {
				assert.GreaterOrEqual(t, r.GoroutinesPerConn, 2.0, "every end has a blocked reader")
			} else {
				assert.Equal(t, 2.0, r.GoroutinesPerConn, "one blocked reader per end")
			}
			if m.usesPool {
				require.NotNil(t, r.PoolInUseBytes)
				assert.Zero(t, *r.PoolInUseBytes, "an idle %s connection must own no pooled buffer", m.name)
			} else {
				assert.Nil(t, r.PoolInUseBytes)
			}
			if strings.HasPrefix(m.name, "grpc") {
				require.NotNil(t, r.AfterBurst, "gRPC modes are measured again after the burst")
				assert.Positive(t, r.AfterBurst.TotalPerConn)
				assert.GreaterOrEqual(t, r.AfterBurst.GoroutinesPerConn, 2.0)
				if m.usesPool {
					require.NotNil(t, r.AfterBurst.PoolInUseBytes)
					assert.Zero(t, *r.AfterBurst.PoolInUseBytes, "idle again after the burst, %s must own no pooled buffer", m.name)
				}
			} else {
				assert.Nil(t, r.AfterBurst)
			}
			got[m.name] = r
		})
	}
	floor, bufio := got["floor"], got["bufio"]
	require.NotZero(t, floor.N)
	require.NotZero(t, bufio.N)
	assert.GreaterOrEqual(t, bufio.HeapPerConn, float64(2*32<<10))
	assert.Less(t, floor.HeapPerConn, float64(16<<10))
	assert.Less(t, floor.TotalPerConn, bufio.TotalPerConn/4)
}

// TestModesInProcess runs every mode in this process and checks, with the
// goroutine count, that tear-down ends every goroutine the mode started
// (goleak checks the same again at the end), and that the pool is empty.
func TestModesInProcess(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			r, err := measure(m, testN, testOptions, nil)
			require.NoError(t, err)
			assert.GreaterOrEqual(t, r.GoroutinesPerConn, 2.0)
			if m.usesPool {
				require.NotNil(t, r.PoolInUseBytes)
				assert.Zero(t, *r.PoolInUseBytes)
			}
			assert.NoError(t, waitGoroutines(before, 5*time.Second), "goroutines back to the baseline after the mode")
		})
	}
}

// TestFailingModeClosesEverything makes the server side of every third
// connection fail and checks that measure reports the error and still
// closes every connection and ends every goroutine.
func TestFailingModeClosesEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	errBoom := errors.New("boom")
	m := mode{
		name:       "failing",
		fdsPerConn: 2,
		open: func(e *env) error {
			var accepted int
			return e.openPairs(func(e *env, c net.Conn, client bool) (endpoint, error) {
				if !client {
					e.mu.Lock()
					accepted++
					k := accepted
					e.mu.Unlock()
					if k%3 == 0 {
						return nil, errBoom
					}
				}
				return newBufio(e, c, client)
			})
		},
	}
	_, err := measure(m, testN, testOptions, nil)
	require.ErrorIs(t, err, errBoom)
	assert.Contains(t, err.Error(), "mode failing")
	assert.NoError(t, waitGoroutines(before, 5*time.Second))
}

func TestMeasureRejectsBadN(t *testing.T) {
	_, err := measure(modes[0], 0, testOptions, nil)
	assert.ErrorContains(t, err, "n must be positive")
	_, err = measure(modes[0], 3, options{}, nil)
	assert.ErrorContains(t, err, "message size must be positive")
}

// TestMeasureInChild runs one mode in a child process, as the command does
// by default.
func TestMeasureInChild(t *testing.T) {
	var stderr bytes.Buffer
	r, err := measureInChild(childRequest{Mode: "floor", N: 10, Options: testOptions}, true, &stderr)
	require.NoError(t, err, stderr.String())
	assert.Equal(t, "floor", r.Mode)
	assert.Equal(t, 10, r.N)
	assert.Positive(t, r.TotalPerConn)
	assert.Equal(t, 2.0, r.GoroutinesPerConn)
}

func TestChildMainBadRequest(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 2, childMain("{", &out, &errb))
	assert.Equal(t, 2, childMain(`{"mode":"nope","n":3}`, &out, &errb))
	assert.Contains(t, errb.String(), `unknown mode "nope"`)
	assert.Zero(t, out.Len())
}

func TestRunJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"-n", "10", "-modes", "bufio", "-scaling", "5,10", "-scaling-modes", "bufio", "-json"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())

	var rep report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	assert.Equal(t, 10, rep.N)
	assert.Equal(t, defaultOptions, rep.Options)
	assert.Contains(t, rep.StackStart, "adaptivestackstart=0")
	assert.Equal(t, uint64(2048), rep.Results[0].StackStartBytes)
	assert.Equal(t, runtime.Version(), rep.Go)
	require.Len(t, rep.Results, 2, "floor is always measured, as the reference")
	assert.Equal(t, "floor", rep.Results[0].Mode)
	assert.Equal(t, "bufio", rep.Results[1].Mode)
	require.NotNil(t, rep.Results[0].RatioToFloor)
	assert.InDelta(t, 1.0, *rep.Results[0].RatioToFloor, 1e-9)
	require.NotNil(t, rep.Results[1].RatioToFloor)
	assert.Greater(t, *rep.Results[1].RatioToFloor, 1.0)
	require.Len(t, rep.Scaling, 1)
	s := rep.Scaling[0]
	assert.Equal(t, "bufio", s.Mode)
	require.Len(t, s.Points, 2)
	assert.Equal(t, 5, s.Points[0].N)
	assert.Equal(t, 10, s.Points[1].N)
	assert.Positive(t, s.Points[0].TotalPerConn)
	// The point at the main N is the main result, not a second run.
	assert.Equal(t, rep.Results[1].TotalPerConn, s.Points[1].TotalPerConn)
	assert.Empty(t, rep.Errors)
}

func TestRunTable(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"-n", "8", "-modes", "floor,tls", "-scaling", "4,8", "-inprocess"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	out := stdout.String()
	for _, want := range []string{
		"N = 8 connections per mode",
		"both ends of a TCP loopback connection",
		"heap KiB", "stack KiB", "total KiB", "pool B", "x floor",
		"floor", "tls", "crypto/tls 1.3",
		"total KiB per connection by N", "N=4", "N=8",
		"all modes in one process",
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "bufio")
	// stderr is not a terminal: progress comes as plain lines, one before
	// and one after each measurement, counting them all.
	assert.Equal(t, []string{
		"idlemem: [1/3] floor N=8 (then tls N=8 and 1 more)",
		"idlemem: [1/3] floor N=8: ",
		"idlemem: [2/3] tls N=8 (then floor N=4)",
		"idlemem: [2/3] tls N=8: ",
		"idlemem: [3/3] floor N=4 (last)",
		"idlemem: [3/3] floor N=4: ",
	}, progressLines(stderr.String()))
	assert.NotContains(t, stderr.String(), "\r", "no redrawn line when stderr is not a terminal")

	// -q silences it.
	stdout.Reset()
	stderr.Reset()
	code = run([]string{"-q", "-n", "4", "-modes", "floor", "-scaling=", "-inprocess"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	assert.Empty(t, stderr.String())
	assert.Contains(t, stdout.String(), "floor")
}

// progressLines returns the lines of s, each cut after its first ": " (the
// figures after it vary).
func progressLines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if i := strings.Index(l, ": "); i >= 0 {
			if j := strings.Index(l[i+2:], ": "); j >= 0 {
				l = l[:i+2+j+2]
			}
		}
		out = append(out, l)
	}
	return out
}

// TestRunReportsOptions checks that the table says which exchange and
// goroutine layout it measured, and that the options reach the child
// processes.
func TestRunReportsOptions(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"-q", "-n", "4", "-modes", "tls", "-scaling=", "-msg", "20KiB", "-setup-on-reader"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	out := stdout.String()
	assert.Contains(t, out, "one 20KiB message each way")
	assert.Contains(t, out, "on each end's reader goroutine (-setup-on-reader)")
	assert.Contains(t, out, "GODEBUG=adaptivestackstart=0")
	assert.NotContains(t, out, "gRPC modes:", "no gRPC mode measured")

	stdout.Reset()
	code = run([]string{"-q", "-n", "4", "-modes", "grpc-plaintext", "-scaling=", "-burst", "96KiB", "-adaptive-stack"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	out = stdout.String()
	assert.Contains(t, out, "after a burst of 96KiB each way")
	assert.Contains(t, out, "burst KiB")
	assert.Contains(t, out, "adaptive (-adaptive-stack)")
	assert.Contains(t, out, "reader goroutine only reads")
}

func TestRunCharts(t *testing.T) {
	dir := t.TempDir()
	svg := filepath.Join(dir, "idle.svg")
	png := filepath.Join(dir, "idle") // the format comes from the flag, not the name
	var stdout, stderr bytes.Buffer
	code := run([]string{"-n", "6", "-modes", "floor,bufio", "-scaling=", "-inprocess", "-svg", svg, "-png", png}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())

	b, err := os.ReadFile(svg)
	require.NoError(t, err)
	assert.Greater(t, len(b), 1000)
	assert.Contains(t, string(b), "<svg")
	assert.Contains(t, string(b), "bufio")
	assert.Contains(t, stdout.String(), "chart written to "+svg)

	p, err := os.ReadFile(png)
	require.NoError(t, err)
	require.Greater(t, len(p), 1000)
	assert.Equal(t, "\x89PNG\r\n\x1a\n", string(p[:8]))
}

func TestRunChartUnwritable(t *testing.T) {
	var stdout, stderr bytes.Buffer
	bad := filepath.Join(t.TempDir(), "missing-dir", "x.svg")
	code := run([]string{"-n", "4", "-modes", "floor", "-scaling=", "-inprocess", "-svg", bad}, &stdout, &stderr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "chart")
}

func TestRunUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown mode", []string{"-modes", "floor,nope"}, `unknown mode "nope" (known modes: floor, bufio`},
		{"no modes", []string{"-modes", " , "}, "no modes given"},
		{"unknown scaling mode", []string{"-scaling-modes", "bogus"}, `-scaling-modes: unknown mode "bogus"`},
		{"zero n", []string{"-n", "0"}, "-n must be positive"},
		{"negative n", []string{"-n", "-5"}, "-n must be positive"},
		{"bad scaling", []string{"-scaling", "500,x"}, `-scaling: "x" is not a positive number`},
		{"zero scaling", []string{"-scaling", "0"}, `-scaling: "0" is not a positive number`},
		{"extra args", []string{"tls"}, "unexpected arguments"},
		{"zero msg", []string{"-msg", "0"}, `-msg: "0" is not a size`},
		{"bad msg unit", []string{"-msg", "64KB2"}, `-msg: "64KB2" is not a size`},
		{"huge msg", []string{"-msg", "65MiB"}, `-msg: "65MiB" is not a size`},
		{"negative burst", []string{"-burst", "-1"}, `-burst: "-1" is not a size`},
		{"unknown flag", []string{"-bogus"}, "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 2, run(tc.args, &stdout, &stderr))
			assert.Contains(t, stderr.String(), tc.want)
			assert.Zero(t, stdout.Len(), "nothing measured, nothing printed")
		})
	}
}

func TestRunHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 0, run([]string{"-h"}, &stdout, &stderr))
	for _, m := range modes {
		assert.Contains(t, stderr.String(), m.name)
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	cfg, err := parseFlags(nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 2000, cfg.n)
	assert.Equal(t, modeNames(), cfg.modes)
	assert.Equal(t, []int{500, 1000, 2000}, cfg.scaling)
	for _, name := range cfg.scalingModes {
		assert.Contains(t, defaultScalingModes, name)
	}
	assert.Contains(t, cfg.scalingModes, "floor")
	assert.False(t, cfg.json)
	assert.Equal(t, defaultOptions, cfg.opts)
	assert.False(t, cfg.adaptiveStack)

	cfg, err = parseFlags([]string{"-msg", "64KiB", "-burst", "0", "-setup-on-reader", "-adaptive-stack", "-q"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, options{Msg: 64 << 10, SetupOnReader: true}, cfg.opts)
	assert.True(t, cfg.adaptiveStack)
	assert.True(t, cfg.quiet)

	// Modes keep the table's order and floor is added.
	cfg, err = parseFlags([]string{"-modes", "tls,bufio,tls", "-scaling", "30,10,30"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, []string{"floor", "bufio", "tls"}, cfg.modes)
	assert.Equal(t, []int{10, 30}, cfg.scaling)
	assert.Equal(t, []string{"floor", "bufio"}, cfg.scalingModes, "tls is not in the default scaling modes")
}

func TestOpenFileCheck(t *testing.T) {
	limit, err := raiseOpenFileLimit()
	if errors.Is(err, errNoLimit) {
		t.Skip("no open-file limit on", runtime.GOOS)
	}
	require.NoError(t, err)
	require.Positive(t, limit)

	cfg := config{n: 10, modes: []string{"floor"}}
	assert.NoError(t, checkOpenFiles(cfg, &bytes.Buffer{}))

	cfg.n = int(limit) // needs twice the limit
	err = checkOpenFiles(cfg, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "at most")
	assert.Contains(t, err.Error(), "open-file limit")

	// A scaling N counts too.
	cfg = config{n: 10, modes: []string{"floor"}, scaling: []int{int(limit)}}
	assert.Error(t, checkOpenFiles(cfg, &bytes.Buffer{}))

	// And run refuses before measuring anything.
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 2, run([]string{"-n", "4", "-modes", "floor", "-scaling", strconv.Itoa(int(limit))}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "connections fit")
	assert.Zero(t, stdout.Len())
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"0", 0}, {"100", 100}, {"100B", 100}, {"100b", 100}, {" 7 ", 7},
		{"64K", 64 << 10}, {"64KB", 64 << 10}, {"64KiB", 64 << 10}, {"64kib", 64 << 10}, {"64 KiB", 64 << 10},
		{"1M", 1 << 20}, {"1MiB", 1 << 20}, {"64MiB", 64 << 20},
	} {
		got, err := parseSize(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
		if tc.want > 0 {
			back, err := parseSize(formatSize(tc.want))
			require.NoError(t, err)
			assert.Equal(t, tc.want, back, "formatSize(%d) = %q", tc.want, formatSize(tc.want))
		}
	}
	for _, bad := range []string{"", "KiB", "-1", "1.5MiB", "64GiB", "65MiB", "99999999999999999999", "1e3", "12 34"} {
		_, err := parseSize(bad)
		assert.Error(t, err, "%q", bad)
	}
	assert.Equal(t, "100B", formatSize(100))
	assert.Equal(t, "1MiB", formatSize(1<<20))
	assert.Equal(t, "1025B", formatSize(1025))
}

func TestWithGODEBUG(t *testing.T) {
	assert.Equal(t, []string{"A=1", "GODEBUG=adaptivestackstart=0"},
		withGODEBUG([]string{"A=1"}, pinStackStart))
	assert.Equal(t, []string{"A=1", "B=2", "GODEBUG=gctrace=1,adaptivestackstart=0"},
		withGODEBUG([]string{"A=1", "GODEBUG=gctrace=1", "B=2"}, pinStackStart))
	assert.Equal(t, []string{"GODEBUG=adaptivestackstart=0"},
		withGODEBUG([]string{"GODEBUG="}, pinStackStart))
}

// TestOptions runs the non-gRPC modes with a large message and with the
// setup on the reader goroutine, in this process, and checks that each
// works and holds no pooled buffer afterwards.
func TestOptions(t *testing.T) {
	for _, opts := range []options{
		{Msg: 64 << 10},
		{Msg: 100, SetupOnReader: true},
		{Msg: 1},
	} {
		for _, name := range []string{"floor", "bufio", "readyreader", "framing", "tls", "alts"} {
			t.Run(fmt.Sprintf("%s/msg=%d/setup-on-reader=%v", name, opts.Msg, opts.SetupOnReader), func(t *testing.T) {
				m, ok := findMode(name)
				require.True(t, ok)
				r, err := measure(m, 5, opts, nil)
				require.NoError(t, err)
				assert.Equal(t, 2.0, r.GoroutinesPerConn)
				assert.Nil(t, r.AfterBurst)
				if m.usesPool {
					assert.Zero(t, *r.PoolInUseBytes)
				}
			})
		}
	}
}

func TestReadN(t *testing.T) {
	buf := make([]byte, 3)
	require.NoError(t, readN(strings.NewReader("abcdefgh"), buf, 8))
	require.NoError(t, readN(strings.NewReader(""), buf, 0))
	assert.ErrorIs(t, readN(strings.NewReader("abcd"), buf, 8), io.ErrUnexpectedEOF)
	assert.ErrorIs(t, readN(strings.NewReader(""), buf, 8), io.EOF)
}

func TestProgress(t *testing.T) {
	var buf syncBuffer
	var opened int64 = 7
	stop := progressTo(&buf, "[2/9]", 20)(func() int64 { return opened })
	stop()
	out := buf.String()
	assert.Contains(t, out, "idlemem: [2/9]")
	assert.Contains(t, out, "7/20 connections open")
	assert.True(t, strings.HasSuffix(out, "\r\033[K"), "the line is cleared at the end: %q", out)
}

// syncBuffer is a bytes.Buffer safe for the progress goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	defer f.Close()
	assert.False(t, isTerminal(f), "a regular file is not a terminal")
}

// TestMeasureInChildFails checks that a child that cannot measure is
// reported as an error naming the mode, with the child's reason on stderr.
func TestMeasureInChildFails(t *testing.T) {
	var stderr bytes.Buffer
	_, err := measureInChild(childRequest{Mode: "no-such-mode", N: 5, Options: testOptions}, true, &stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "mode no-such-mode (N=5): child process")
	assert.Contains(t, stderr.String(), `unknown mode "no-such-mode"`)
}

// FuzzParseModes checks that any -modes value either is refused or yields
// known, distinct modes.
func FuzzParseModes(f *testing.F) {
	for _, s := range []string{"", ",", "floor", "floor,bufio", " tls , tls ", "nope", "floor,,grpc-tls", "FLOOR"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		names, err := parseModes(list)
		if err != nil {
			assert.Empty(t, names)
			return
		}
		require.NotEmpty(t, names)
		seen := map[string]bool{}
		for _, n := range names {
			_, ok := findMode(n)
			assert.True(t, ok, n)
			assert.False(t, seen[n], "duplicate %q", n)
			seen[n] = true
		}
	})
}

// FuzzParseFlags checks that any -modes/-scaling pair either is refused or
// gives a configuration that starts with the floor and keeps the table's
// order.
func FuzzParseFlags(f *testing.F) {
	f.Add("bufio", "500,1000")
	f.Add("tls,floor", "")
	f.Add("x", "1")
	f.Add("grpc-tls", "3,-1")
	f.Add("bufio", "99999999999999999999")
	f.Fuzz(func(t *testing.T, modesFlag, scaling string) {
		cfg, err := parseFlags([]string{"-modes", modesFlag, "-scaling", scaling}, io.Discard)
		if err != nil {
			return
		}
		require.NotEmpty(t, cfg.modes)
		assert.Equal(t, modes[0].name, cfg.modes[0])
		last := -1
		for _, name := range cfg.modes {
			i := slices.Index(modeNames(), name)
			assert.Greater(t, i, last, "table order")
			last = i
		}
		for i, n := range cfg.scaling {
			assert.Positive(t, n)
			if i > 0 {
				assert.Greater(t, n, cfg.scaling[i-1])
			}
		}
		for _, name := range cfg.scalingModes {
			assert.Contains(t, cfg.modes, name)
		}
	})
}

// Example_unknownMode shows the error for a mode that does not exist.
func Example_unknownMode() {
	code := run([]string{"-modes", "floor,epoll"}, os.Stdout, os.Stdout)
	fmt.Println("exit status", code)
	// Output:
	// idlemem: unknown mode "epoll" (known modes: floor, bufio, readyreader, framing, tls, tlsconn, alts, grpc-plaintext, grpc-tls, grpc-tls-rbuf0, grpc-tlsconn, grpc-tlsconn-server, grpc-plaintext-readygrpc, grpc-readyconn)
	// exit status 2
}
