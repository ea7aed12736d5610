//go:build unix

package rawconn_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testnet"
	"github.com/readyconn/readyconn/rawconn"
)

// syscalls records the read(2) and FIONREAD calls of the Readers while a
// test runs, and lets the test replace chosen reads.
type syscalls struct {
	mu  sync.Mutex
	log []string
	// fault, if set, is asked before every read; it returns the result
	// to inject, or ok false for the real read.
	fault func(call int, fd int, p []byte) (n int, err error, ok bool)
	reads int
}

// install makes every Reader call through s until the test ends.
func (s *syscalls) install(t *testing.T) {
	restore := rawconn.SetSyscalls(s.read, s.queued)
	t.Cleanup(restore)
}

func (s *syscalls) read(fd int, p []byte) (int, error) {
	s.mu.Lock()
	call := s.reads
	s.reads++
	fault := s.fault
	s.mu.Unlock()
	var n int
	var err error
	ok := false
	if fault != nil {
		n, err, ok = fault(call, fd, p)
	}
	if !ok {
		n, err = syscall.Read(fd, p)
	}
	s.record(fmt.Sprintf("read(%d)=%s", len(p), result(n, err)))
	return n, err
}

func result(n int, err error) string {
	if err != nil {
		if errno, ok := err.(syscall.Errno); ok && (errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK) {
			return "EAGAIN"
		}
		return err.Error()
	}
	return fmt.Sprint(n)
}

func (s *syscalls) queued(fd int) (int, bool) {
	q, ok := rawconn.Queued(fd)
	s.record(fmt.Sprintf("fionread=%d", q))
	return q, ok
}

func (s *syscalls) record(e string) {
	s.mu.Lock()
	s.log = append(s.log, e)
	s.mu.Unlock()
}

// take returns the calls recorded since the last take.
func (s *syscalls) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := strings.Join(s.log, " ")
	s.log = nil
	return l
}

// queuedOn waits until n bytes are queued on c, so that a read finds them
// without waiting.
func queuedOn(t *testing.T, c conn, n int) {
	t.Helper()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var q int
		require.NoError(t, rc.Control(func(fd uintptr) { q, _ = rawconn.Queued(int(fd)) }))
		if q >= n {
			return
		}
		require.True(t, time.Now().Before(deadline), "only %d of %d bytes queued", q, n)
		time.Sleep(time.Millisecond)
	}
}

// result of a ReadOnReady in a goroutine.
type res struct {
	data []byte
	n    int
	err  error
}

func readAsync(r *rawconn.Reader, size int, pool bufferpool.Pool) chan res {
	done := make(chan res, 1)
	go func() {
		buf, n, err := r.ReadOnReady(size, pool)
		var data []byte
		if n > 0 {
			data = bytes.Clone((*buf)[:n])
			pool.Put(buf)
		}
		done <- res{data, n, err}
	}()
	return done
}

// TestWakeCostsOneRead checks the cost of a wake-up in lock-step: a read
// that finds nothing before parking (into the probe, no pool buffer) and
// one read into a pool buffer after it, and no FIONREAD: what a
// bufio.Reader pays.
func TestWakeCostsOneRead(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			var s syscalls
			s.install(t)
			rc, wc := pair(t, network)
			pool := debugPool()
			r, err := rawconn.New(rc)
			require.NoError(t, err)
			msg := bytes.Repeat([]byte("m"), 100)
			for i := range 20 {
				done := readAsync(r, 32<<10, pool)
				testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
				require.Zero(t, pool.Stats().InUseBytes, "parked")
				_, err := wc.Write(msg)
				require.NoError(t, err)
				got := <-done
				require.NoError(t, got.err)
				require.Equal(t, msg, got.data)
				if i > 0 { // the first read has no history to size its buffer
					require.Equal(t, "read(64)=EAGAIN read(200)=100", s.take(), "message %d", i)
				} else {
					s.take()
				}
			}
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

// TestBytesAlreadyQueued covers calls that find the bytes before waiting.
func TestBytesAlreadyQueued(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		msg   int
		calls string // the syscalls of the first ReadOnReady
		first int    // its n
	}{
		// Fits in the probe: one read, copied into a buffer of its size.
		{name: "small", size: 32 << 10, msg: 30, calls: "read(64)=30", first: 30},
		// Exactly the probe: the rest read finds nothing.
		{name: "probe size", size: 32 << 10, msg: 64, calls: "read(64)=64 read(64)=EAGAIN", first: 64},
		// The caller takes no more than the probe holds.
		{name: "size below probe", size: 10, msg: 30, calls: "read(10)=10", first: 10},
		// More than the probe: the rest goes into a buffer twice as big,
		// which fills, so FIONREAD sizes the next read.
		{name: "large", size: 32 << 10, msg: 1000, calls: "read(64)=64 read(64)=64 fionread=872", first: 128},
		// All the caller asked for fits in the guess.
		{name: "large small size", size: 100, msg: 1000, calls: "read(64)=64 read(36)=36", first: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s syscalls
			s.install(t)
			rc, wc := pair(t, "tcp")
			pool := debugPool()
			r, err := rawconn.New(rc)
			require.NoError(t, err)
			msg := make([]byte, tc.msg)
			for i := range msg {
				msg[i] = byte(i)
			}
			_, err = wc.Write(msg)
			require.NoError(t, err)
			queuedOn(t, rc, tc.msg)
			buf, n, err := r.ReadOnReady(tc.size, pool)
			require.NoError(t, err)
			require.Equal(t, tc.calls, s.take())
			require.Equal(t, tc.first, n)
			require.Equal(t, msg[:n], (*buf)[:n])
			if tc.msg < rawconn.ProbeSize {
				require.Equal(t, n, len(*buf), "sized to the bytes")
			}
			pool.Put(buf)
			got := append([]byte(nil), msg[:n]...)
			got = append(got, readAll(t, r, tc.msg-n, tc.size, pool)...)
			require.Equal(t, msg, got)
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

// TestBytesArriveBeforePark writes the message after the probe read found
// nothing but before the runtime parks the reader: the poller must still
// wake it.
func TestBytesArriveBeforePark(t *testing.T) {
	rc, wc := pair(t, "tcp")
	var once sync.Once
	s := syscalls{fault: func(call, fd int, p []byte) (int, error, bool) {
		if call != 0 {
			return 0, nil, false
		}
		n, err := syscall.Read(fd, p)
		once.Do(func() {
			_, werr := wc.Write([]byte("late"))
			require.NoError(t, werr)
			queuedOn(t, rc, 4)
		})
		return n, err, true
	}}
	s.install(t)
	pool := debugPool()
	r, err := rawconn.New(rc)
	require.NoError(t, err)
	require.NoError(t, rc.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf, n, err := r.ReadOnReady(4096, pool)
	require.NoError(t, err, "the wake-up was lost")
	require.Equal(t, "late", string((*buf)[:n]))
	pool.Put(buf)
	require.Equal(t, "read(64)=EAGAIN read(128)=4", s.take())
}

// TestBytesArriveAfterShortRead is the case that forbids skipping the read
// before parking after a short read: the next message arrives and the
// runtime's poller collects its readiness event before ReadOnReady is
// called again. RawConn.Read clears that event first (internal/poll's
// prepareRead), so only a read finds the bytes; a reader that parked
// without one would wait for bytes that are already there.
func TestBytesArriveAfterShortRead(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			rc, wc := pair(t, network)
			pool := debugPool()
			r, err := rawconn.New(rc)
			require.NoError(t, err)
			for i := range 5 {
				done := readAsync(r, 4096, pool)
				testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
				_, err := wc.Write([]byte("first"))
				require.NoError(t, err)
				got := <-done
				require.NoError(t, got.err)
				require.Equal(t, "first", string(got.data), "a short read")

				_, err = wc.Write([]byte("second"))
				require.NoError(t, err)
				// Let the scheduler go idle, so that it polls the network
				// and takes the readiness event of "second".
				time.Sleep(20 * time.Millisecond)
				require.NoError(t, rc.SetReadDeadline(time.Now().Add(10*time.Second)))
				buf, n, err := r.ReadOnReady(4096, pool)
				require.NoError(t, err, "round %d: parked with bytes queued", i)
				require.Equal(t, "second", string((*buf)[:n]))
				pool.Put(buf)
				require.NoError(t, rc.SetReadDeadline(time.Time{}))
			}
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

// TestSpuriousWake makes the read after a wake-up find nothing (EAGAIN):
// the buffer goes back to the pool before the reader waits again.
func TestSpuriousWake(t *testing.T) {
	rc, wc := pair(t, "tcp")
	pool := debugPool()
	var mu sync.Mutex
	inUse := int64(-1)
	s := syscalls{fault: func(call, fd int, p []byte) (int, error, bool) {
		if call == 1 { // the read into the pool buffer after the wake-up
			mu.Lock()
			inUse = pool.Stats().InUseBytes
			mu.Unlock()
			return 0, syscall.EAGAIN, true
		}
		return 0, nil, false
	}}
	s.install(t)
	r, err := rawconn.New(rc)
	require.NoError(t, err)
	done := readAsync(r, 4096, pool)
	testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
	_, err = wc.Write([]byte("hello"))
	require.NoError(t, err)
	got := <-done
	require.NoError(t, got.err)
	require.Equal(t, "hello", string(got.data))
	// The bytes were there all along: the probe read of the second wait
	// finds them.
	require.Equal(t, "read(64)=EAGAIN read(128)=EAGAIN read(64)=5", s.take())
	mu.Lock()
	require.Positive(t, inUse, "the read after the wake-up used a pool buffer")
	mu.Unlock()
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestReadFailures injects a failing read(2) at each point of a call and
// checks what is returned and that every pool buffer went back.
func TestReadFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		msg    int // bytes queued before the call (0: the call waits)
		call   int // the read that fails
		errno  error
		wantN  int // bytes returned with the error
		errIs  error
		nilErr bool // the bytes come back without an error
	}{
		{name: "probe read fails", msg: 0, call: 0, errno: syscall.ECONNRESET, errIs: syscall.ECONNRESET},
		{name: "read after wake-up fails", msg: 0, call: 1, errno: syscall.ECONNRESET, errIs: syscall.ECONNRESET},
		{name: "rest after a full probe fails", msg: 300, call: 1, errno: syscall.ECONNRESET, wantN: 64, errIs: syscall.ECONNRESET},
		{name: "rest after a full probe would block", msg: 300, call: 1, errno: syscall.EAGAIN, wantN: 64, nilErr: true},
		{name: "probe data then end of stream", msg: 300, call: 1, errno: nil, wantN: 64, nilErr: true},
		{name: "not an errno", msg: 0, call: 0, errno: errors.New("odd"), errIs: syscall.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, wc := pair(t, "tcp")
			pool := debugPool()
			s := syscalls{fault: func(call, fd int, p []byte) (int, error, bool) {
				switch {
				case call == tc.call && tc.errno == nil:
					return 0, nil, true // a zero read: end of stream
				case call == tc.call:
					return 0, tc.errno, true
				}
				return 0, nil, false
			}}
			s.install(t)
			r, err := rawconn.New(rc)
			require.NoError(t, err)
			switch {
			case tc.msg > 0:
				_, err = wc.Write(make([]byte, tc.msg))
				require.NoError(t, err)
				queuedOn(t, rc, tc.msg)
			case tc.call > 0:
				// The failing read follows a wake-up.
				go func() {
					testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
					wc.Write([]byte("x"))
				}()
			}
			buf, n, err := r.ReadOnReady(4096, pool)
			require.Equal(t, tc.wantN, n)
			if n > 0 {
				require.NotNil(t, buf)
				pool.Put(buf)
			} else {
				require.Nil(t, buf)
			}
			if tc.nilErr {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.errIs)
				requireOpError(t, err, rc)
			}
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

// TestEINTRRetried makes reads fail with EINTR once.
func TestEINTRRetried(t *testing.T) {
	rc, wc := pair(t, "tcp")
	s := syscalls{fault: func(call, fd int, p []byte) (int, error, bool) {
		if call%2 == 0 {
			return 0, syscall.EINTR, true
		}
		return 0, nil, false
	}}
	s.install(t)
	pool := debugPool()
	r, err := rawconn.New(rc)
	require.NoError(t, err)
	done := readAsync(r, 4096, pool)
	testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
	_, err = wc.Write([]byte("intr"))
	require.NoError(t, err)
	got := <-done
	require.NoError(t, got.err)
	require.Equal(t, "intr", string(got.data))
}

// TestDeadlineBetweenProbeAndRest sets the deadline after a full probe
// read, so that the read of the rest fails in the runtime before any
// read(2): the probe's bytes come back first, the deadline next.
func TestDeadlineBetweenProbeAndRest(t *testing.T) {
	rc, wc := pair(t, "tcp")
	s := syscalls{fault: func(call, fd int, p []byte) (int, error, bool) {
		if call != 0 {
			return 0, nil, false
		}
		n, err := syscall.Read(fd, p)
		rc.SetReadDeadline(time.Now().Add(-time.Second))
		return n, err, true
	}}
	s.install(t)
	pool := debugPool()
	r, err := rawconn.New(rc)
	require.NoError(t, err)
	msg := bytes.Repeat([]byte("d"), 200)
	_, err = wc.Write(msg)
	require.NoError(t, err)
	queuedOn(t, rc, len(msg))
	buf, n, err := r.ReadOnReady(4096, pool)
	require.NoError(t, err)
	require.Equal(t, msg[:64], (*buf)[:n])
	pool.Put(buf)
	_, _, err = r.ReadOnReady(4096, pool)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	requireOpError(t, err, rc)
	require.NoError(t, rc.SetReadDeadline(time.Time{}))
	require.Equal(t, msg[64:], readAll(t, r, len(msg)-64, 4096, pool))
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestReadSizing follows the sizes of the reads a message larger than the
// guess takes, with FIONREAD known, unknown, and reporting nothing left.
func TestReadSizing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		unknown bool // FIONREAD not available
		msg     int  // second message, after a 100-byte one
		calls   string
	}{
		// The guess (twice the last message) fills: FIONREAD tells the
		// rest, which the next call reads without waiting.
		{name: "known", msg: 1000, calls: "read(64)=EAGAIN read(200)=200 fionread=800 | read(800)=800"},
		// Without FIONREAD the next read doubles.
		{name: "unknown", unknown: true, msg: 1000, calls: "read(64)=EAGAIN read(200)=200 fionread=0 | read(400)=400 fionread=0 | read(800)=400"},
		// The message is exactly the guess: FIONREAD finds nothing left.
		{name: "exact", msg: 200, calls: "read(64)=EAGAIN read(200)=200 fionread=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s syscalls
			s.install(t)
			if tc.unknown {
				restore := rawconn.SetSyscalls(nil, func(fd int) (int, bool) {
					s.record("fionread=0")
					return 0, false
				})
				t.Cleanup(restore)
			}
			rc, wc := pair(t, "tcp")
			pool := debugPool()
			r, err := rawconn.New(rc)
			require.NoError(t, err)
			// A first message of 100 bytes sets the guess to 200.
			done := readAsync(r, 32<<10, pool)
			testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
			_, err = wc.Write(make([]byte, 100))
			require.NoError(t, err)
			require.Equal(t, 100, (<-done).n)
			s.take()

			done = readAsync(r, 32<<10, pool)
			testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
			msg := make([]byte, tc.msg)
			for i := range msg {
				msg[i] = byte(i)
			}
			_, err = wc.Write(msg)
			require.NoError(t, err)
			queuedOn(t, rc, 0)
			first := <-done
			require.NoError(t, first.err)
			calls := []string{s.take()}
			got := first.data
			for len(got) < len(msg) {
				buf, n, err := r.ReadOnReady(32<<10, pool)
				require.NoError(t, err)
				got = append(got, (*buf)[:n]...)
				pool.Put(buf)
				calls = append(calls, s.take())
			}
			require.Equal(t, msg, got)
			require.Equal(t, tc.calls, strings.Join(calls, " | "))
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

// TestWakeBufferSizedAfterBulk reads a large message with a large size and
// then a small one: the small one does not keep a buffer sized for the
// large one.
func TestWakeBufferSizedAfterBulk(t *testing.T) {
	rc, wc := pair(t, "tcp")
	pool := debugPool()
	r, err := rawconn.New(rc)
	require.NoError(t, err)
	big := make([]byte, 256<<10)
	go wc.Write(big)
	require.Len(t, readAll(t, r, len(big), 64<<10, pool), len(big))
	for range 3 {
		done := readAsync(r, 64<<10, pool)
		testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
		_, err = wc.Write(make([]byte, 100))
		require.NoError(t, err)
		got := <-done
		require.NoError(t, got.err)
		require.Equal(t, 100, got.n)
	}
	// What the last small message took: check with a counting pool.
	cp := &countingPool{Tiered: bufferpool.NewTiered()}
	done := readAsync(r, 64<<10, cp)
	testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
	_, err = wc.Write(make([]byte, 100))
	require.NoError(t, err)
	require.Equal(t, 100, (<-done).n)
	require.LessOrEqual(t, cp.bytes.Load(), int64(4096))
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestShrinkAfterMisguess makes the guess large and the message small, so
// that the read fills a quarter or less of a large buffer: the bytes come
// back in a buffer of their size.
func TestShrinkAfterMisguess(t *testing.T) {
	rc, wc := pair(t, "tcp")
	pool := debugPool()
	r, err := rawconn.New(rc)
	require.NoError(t, err)
	// A 16 KiB message read whole sets the guess to 32 KiB.
	msg := make([]byte, 16<<10)
	done := readAsync(r, 64<<10, pool)
	testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
	_, err = wc.Write(msg)
	require.NoError(t, err)
	got := <-done
	require.NoError(t, got.err)
	require.Equal(t, msg, append(got.data, readAll(t, r, len(msg)-got.n, 64<<10, pool)...))

	done2 := make(chan *[]byte, 1)
	go func() {
		buf, n, err := r.ReadOnReady(64<<10, pool)
		if err != nil || n != 100 {
			panic(fmt.Sprint(n, err))
		}
		done2 <- buf
	}()
	testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
	_, err = wc.Write(make([]byte, 100))
	require.NoError(t, err)
	buf := <-done2
	require.LessOrEqual(t, cap(*buf), 128)
	pool.Put(buf)
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestDatagramWaits covers the wait of a datagram socket, which polls
// rather than reading into the probe: a datagram larger than the probe
// arrives whole, and an empty one reads as (nil, 0, nil).
func TestDatagramWaits(t *testing.T) {
	rc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer rc.Close()
	wc, err := net.DialUDP("udp", nil, rc.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	defer wc.Close()
	pool := debugPool()
	r, err := rawconn.New(rc)
	require.NoError(t, err)
	for _, size := range []int{1000, 0, 10} {
		done := readAsync(r, 4096, pool)
		testnet.WaitParked(t, "rawconn.(*Reader).ReadOnReady")
		require.Zero(t, pool.Stats().InUseBytes)
		dgram := bytes.Repeat([]byte("u"), size)
		_, err = wc.Write(dgram)
		require.NoError(t, err)
		got := <-done
		require.NoError(t, got.err)
		require.Equal(t, size, got.n)
		require.Equal(t, string(dgram), string(got.data))
	}
	require.Zero(t, pool.Stats().InUseBytes)
}
