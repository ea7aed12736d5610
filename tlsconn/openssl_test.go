package tlsconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/testcert"
)

// The tests in this file talk to OpenSSL's s_server and s_client, an
// independent TLS implementation, with tlsconn at the other end in both
// roles. OpenSSL runs as a child process: what it receives it prints on
// stdout, what is written to its stdin it sends, and single-letter lines on
// its stdin are commands (k and K: KeyUpdate; Q: close). Data goes both ways
// in frames (see frameOf) whose payload uses no letter, so that no chunk of
// it can be taken for a command and OpenSSL's own messages on stdout stand
// out. -msg -msgfile makes OpenSSL log every record and handshake message it
// sends and receives, which is the evidence that a KeyUpdate, a padded
// record or a HelloRetryRequest really happened.

// opBudget bounds every single operation of these tests (a handshake, one
// transfer, waiting for OpenSSL to print something): generous, for a busy
// machine running -race. No test asserts on elapsed time.
const opBudget = 30 * time.Second

// interopEnv set to "skip" makes the tests skip, instead of failing, where
// the openssl command is missing.
const interopEnv = "READYCONN_INTEROP"

var opensslChecked sync.Map // path → error of its version check

// opensslBin returns the path of the openssl command. Where it is missing or
// too old, the test fails and says how to install it (CI's .ci/run does),
// unless READYCONN_INTEROP=skip is set: then the test is skipped.
func opensslBin(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("openssl")
	if err == nil {
		err = opensslVersionOK(path)
	}
	if err != nil {
		if os.Getenv(interopEnv) == "skip" {
			tb.Skipf("OpenSSL interoperability test skipped (%s=skip): %v", interopEnv, err)
		}
		tb.Fatalf("the OpenSSL interoperability tests need the openssl command, OpenSSL 1.1.1 or later: %v; "+
			"install it with `apt-get install openssl` (.ci/run does), or set %s=skip to skip these tests", err, interopEnv)
	}
	return path
}

// opensslVersionOK checks once per path that openssl is OpenSSL 1.1.1 or
// later: the KeyUpdate commands, -record_padding, -max_send_frag and TLS 1.3
// need it (LibreSSL has none of them).
func opensslVersionOK(path string) error {
	if v, ok := opensslChecked.Load(path); ok {
		return v.(*versionResult).err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opBudget)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version").Output()
	v := strings.TrimSpace(string(out))
	switch {
	case err != nil:
		err = fmt.Errorf("%s version: %w", path, err)
	case !strings.HasPrefix(v, "OpenSSL 3.") && !strings.HasPrefix(v, "OpenSSL 1.1.1"):
		err = fmt.Errorf("%s is %q", path, v)
	}
	opensslChecked.Store(path, &versionResult{err})
	return err
}

type versionResult struct{ err error }

// ---------------------------------------------------------------- process

// outBuf collects what a child process writes to one of its outputs and
// lets the test wait for it.
type outBuf struct {
	mu      sync.Mutex
	b       []byte
	changed chan struct{} // closed by the next Write
}

func (o *outBuf) Write(p []byte) (int, error) {
	o.mu.Lock()
	o.b = append(o.b, p...)
	if o.changed != nil {
		close(o.changed)
		o.changed = nil
	}
	o.mu.Unlock()
	return len(p), nil
}

// view returns what was written so far (bytes that never change: later
// Writes only append) and a channel closed by the next Write.
func (o *outBuf) view() ([]byte, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.changed == nil {
		o.changed = make(chan struct{})
	}
	return o.b[:len(o.b):len(o.b)], o.changed
}

func (o *outBuf) String() string {
	b, _ := o.view()
	return string(b)
}

// ossl is a running openssl s_server or s_client.
type ossl struct {
	tb      testing.TB
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  outBuf
	stderr  outBuf
	msgFile string // -msgfile, or ""
	exited  chan struct{}
	waitErr error // set before exited is closed

	outPos int // stdout up to here has been looked at by takeFrame
	ids    int // frames sent each way so far
}

// startOpenSSL runs openssl with args (args[0] is s_server or s_client),
// with -msg logging to a file if msgs is set. The process is killed when the
// test ends; on failure its output is logged.
func startOpenSSL(tb testing.TB, msgs bool, args ...string) *ossl {
	tb.Helper()
	bin := opensslBin(tb)
	p := &ossl{tb: tb, name: args[0], exited: make(chan struct{})}
	if msgs {
		p.msgFile = filepath.Join(tb.TempDir(), "msgs.txt")
		args = append(args, "-msg", "-msgfile", p.msgFile)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	stdin, err := p.cmd.StdinPipe()
	require.NoError(tb, err)
	p.stdin = stdin
	require.NoError(tb, p.cmd.Start(), "openssl %s", strings.Join(args, " "))
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		p.cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(opBudget):
			tb.Errorf("openssl %s still running %v after it was killed", p.name, opBudget)
			return
		}
		if tb.Failed() {
			tb.Logf("openssl %s (%v)\n--- stdout (end):\n%s\n--- stderr:\n%s\n--- msgs (end):\n%s",
				strings.Join(args, " "), p.waitErr, tail(p.stdout.String(), 3000), tail(p.stderr.String(), 3000), tail(p.msgs(), 3000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// waitOut waits until o holds want at or after offset from, and returns the
// offset just after it. It fails the test if the process exits without
// writing it or the budget runs out.
func (p *ossl) waitOut(o *outBuf, from int, want string) int {
	p.tb.Helper()
	timer := time.NewTimer(opBudget)
	defer timer.Stop()
	exited := false
	for {
		b, changed := o.view()
		if i := bytes.Index(b[from:], []byte(want)); i >= 0 {
			return from + i + len(want)
		}
		from = max(from, len(b)-len(want)+1)
		if exited {
			p.tb.Fatalf("openssl %s exited (%v) without printing %q", p.name, p.waitErr, want)
		}
		select {
		case <-changed:
		case <-p.exited:
			exited = true // all its output is in: look once more
		case <-timer.C:
			p.tb.Fatalf("openssl %s did not print %q within %v", p.name, want, opBudget)
		}
	}
}

// msgs returns what -msg has logged so far.
func (p *ossl) msgs() string {
	if p.msgFile == "" {
		return ""
	}
	b, _ := os.ReadFile(p.msgFile)
	return string(b)
}

// countMsgs counts the messages of the -msg log matching re.
func (p *ossl) countMsgs(re *regexp.Regexp) int {
	return len(re.FindAllStringIndex(p.msgs(), -1))
}

// waitMsgs waits until the -msg log holds at least n matches of re (the
// log is written as OpenSSL goes, flushed after each message).
func (p *ossl) waitMsgs(re *regexp.Regexp, n int) int {
	p.tb.Helper()
	deadline := time.Now().Add(opBudget)
	for {
		got := p.countMsgs(re)
		if got >= n {
			return got
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("openssl %s logged %d messages matching %q, want %d within %v", p.name, got, re, n, opBudget)
		}
		select {
		case <-p.exited:
			if got := p.countMsgs(re); got < n {
				p.tb.Fatalf("openssl %s exited (%v) having logged %d messages matching %q, want %d", p.name, p.waitErr, got, re, n)
			}
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitExit waits for the process to end and returns how it ended.
func (p *ossl) waitExit() error {
	p.tb.Helper()
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(opBudget):
		p.tb.Fatalf("openssl %s did not exit within %v", p.name, opBudget)
		return nil
	}
}

// command writes a command line (k, K, Q) to OpenSSL's stdin. Nothing else
// may be pending there: OpenSSL looks at the first byte of each chunk it
// reads.
func (p *ossl) command(line string) {
	p.tb.Helper()
	_, err := io.WriteString(p.stdin, line+"\n")
	require.NoError(p.tb, err, "writing %q to openssl's stdin", line)
}

// ---------------------------------------------------------------- frames

// frameOf is what each side sends for data: a start line with the frame's
// id, the data with each byte as two characters from '0'...'?' (no letters,
// which OpenSSL could read as commands or which its own messages use), and
// an end line. Frames of a 4-digit id are 2*len(data)+16 bytes long.
func frameOf(id int, data []byte) []byte {
	f := make([]byte, 0, 2*len(data)+16)
	f = fmt.Appendf(f, "[[%04d\n", id)
	for _, c := range data {
		f = append(f, '0'+c>>4, '0'+c&15)
	}
	return fmt.Appendf(f, "\n%04d]]]\n", id)
}

// osslNoise is what OpenSSL prints on its stdout, among the data it
// received, when a record without data (a KeyUpdate) arrives.
var osslNoise = [][]byte{[]byte("read R BLOCK\n"), []byte("Read BLOCK\n")}

// takeFrame waits until OpenSSL has printed frame (an entire frameOf) on
// its stdout and checks it arrived unchanged.
func (p *ossl) takeFrame(id int, frame []byte) {
	p.tb.Helper()
	start := p.waitOut(&p.stdout, p.outPos, fmt.Sprintf("[[%04d\n", id)) - 7
	end := p.waitOut(&p.stdout, start, fmt.Sprintf("\n%04d]]]\n", id))
	b, _ := p.stdout.view()
	got := b[start:end]
	if !bytes.Equal(got, frame) {
		for _, noise := range osslNoise {
			got = bytes.ReplaceAll(got, noise, nil)
		}
	}
	requireSameBytes(p.tb, frame, got, "data from tlsconn as printed by openssl %s", p.name)
	p.outPos = end
}

// requireSameBytes compares long byte strings without printing them.
func requireSameBytes(tb testing.TB, want, got []byte, what string, args ...any) {
	tb.Helper()
	if bytes.Equal(want, got) {
		return
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	tb.Fatalf("%s: got %d bytes, want %d; first difference at %d: got %q, want %q", fmt.Sprintf(what, args...),
		len(got), len(want), i, got[i:min(len(got), i+40)], want[i:min(len(want), i+40)])
}

// readExact reads from c exactly want, with nothing after it, using Read or,
// with ready, ReadOnReady (c is a *Conn).
func readExact(tb testing.TB, c net.Conn, want []byte, ready bool) {
	tb.Helper()
	require.NoError(tb, c.SetReadDeadline(time.Now().Add(opBudget)))
	got := make([]byte, 0, len(want))
	var pool bufferpool.Pool = bufferpool.Default()
	p := make([]byte, 64<<10)
	for len(got) < len(want) {
		var n int
		var err error
		if ready {
			var buf *[]byte
			buf, n, err = c.(*Conn).ReadOnReady(64<<10, pool)
			if buf != nil {
				got = append(got, (*buf)[:n]...)
				pool.Put(buf)
			}
		} else {
			n, err = c.Read(p)
			got = append(got, p[:n]...)
		}
		require.NoError(tb, err, "reading from openssl: %d of %d bytes read", len(got), len(want))
	}
	requireSameBytes(tb, want, got, "data from openssl as read by tlsconn")
}

// toPeer sends n random bytes from c to OpenSSL and checks OpenSSL printed
// them.
func (p *ossl) toPeer(c net.Conn, n int) {
	p.tb.Helper()
	p.ids++
	frame := frameOf(p.ids, randBytes(n))
	errc := goWrite(c, frame)
	p.takeFrame(p.ids, frame)
	require.NoError(p.tb, <-errc, "tlsconn Write")
}

// fromPeer makes OpenSSL send n random bytes to c and checks they arrive.
func (p *ossl) fromPeer(c net.Conn, n int) {
	p.tb.Helper()
	p.ids++
	frame := frameOf(p.ids, randBytes(n))
	errc := goWrite(p.stdin, frame)
	readExact(p.tb, c, frame, p.ids%2 == 0)
	require.NoError(p.tb, <-errc, "writing to openssl's stdin")
}

// exchange sends n random bytes each way at once and checks both arrive.
func (p *ossl) exchange(c net.Conn, n int) {
	p.tb.Helper()
	p.ids++
	to, from := frameOf(p.ids, randBytes(n)), frameOf(p.ids, randBytes(n))
	werr := goWrite(c, to)
	serr := goWrite(p.stdin, from)
	readExact(p.tb, c, from, p.ids%2 == 0)
	p.takeFrame(p.ids, to)
	require.NoError(p.tb, <-werr, "tlsconn Write")
	require.NoError(p.tb, <-serr, "writing to openssl's stdin")
}

// goWrite writes b to w on a goroutine of its own (with a write deadline if
// w is a net.Conn) and returns the channel its result comes on. Neither
// writer blocks for good if the test fails: the conn is closed and the
// process killed when the test ends.
func goWrite(w io.Writer, b []byte) <-chan error {
	errc := make(chan error, 1)
	go func() {
		if c, ok := w.(net.Conn); ok {
			if err := c.SetWriteDeadline(time.Now().Add(opBudget)); err != nil {
				errc <- err
				return
			}
		}
		_, err := w.Write(b)
		errc <- err
	}()
	return errc
}

// ---------------------------------------------------------------- connections

// role is the part tlsconn plays; OpenSSL plays the other.
type role int

const (
	weClient role = iota // tlsconn client, openssl s_server
	weServer             // tlsconn server, openssl s_client
)

func (r role) String() string {
	if r == weClient {
		return "tlsconn-client"
	}
	return "tlsconn-server"
}

var roles = []role{weClient, weServer}

// pemFiles writes the test certificates for OpenSSL.
func pemFiles(t testing.TB) testcert.Files {
	f, err := testPKI(t).WritePEM(t.TempDir())
	require.NoError(t, err)
	return f
}

// startServer starts s_server on a port of its choosing, serving naccept
// connections, and returns it and its address. With rsa it presents the RSA
// certificate.
func startServer(t testing.TB, f testcert.Files, rsa bool, naccept int, msgs bool, extra ...string) (*ossl, string) {
	t.Helper()
	cert, key := f.ServerCert, f.ServerKey
	if rsa {
		cert, key = f.ServerRSACert, f.ServerRSAKey
	}
	args := append([]string{"s_server", "-accept", "127.0.0.1:0", "-naccept", fmt.Sprint(naccept),
		"-cert", cert, "-key", key}, extra...)
	p := startOpenSSL(t, msgs, args...)
	from := p.waitOut(&p.stdout, 0, "ACCEPT 127.0.0.1:")
	nl := p.waitOut(&p.stdout, from, "\n")
	b, _ := p.stdout.view()
	return p, "127.0.0.1:" + strings.TrimSpace(string(b[from:nl]))
}

// dialOurs connects a tlsconn client to addr and runs the handshake.
func dialOurs(t testing.TB, addr string, cfg *tls.Config, opts ...Option) *Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, opBudget)
	require.NoError(t, err)
	c := Client(nc, cfg, opts...)
	t.Cleanup(func() { c.Close() })
	handshakeWithin(t, c)
	return c
}

// startClient starts s_client connecting to addr.
func startClient(t testing.TB, f testcert.Files, addr string, msgs bool, extra ...string) *ossl {
	t.Helper()
	args := append([]string{"s_client", "-connect", addr, "-CAfile", f.CA, "-verify_return_error",
		"-verify_ip", "127.0.0.1"}, extra...)
	return startOpenSSL(t, msgs, args...)
}

// listenOurs listens on a loopback port for s_client.
func listenOurs(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// acceptOurs accepts p's connection on ln as a tlsconn server and runs the
// handshake.
func acceptOurs(t testing.TB, ln net.Listener, p *ossl, cfg *tls.Config, opts ...Option) *Conn {
	t.Helper()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	var a accepted
	select {
	case a = <-ch:
	case <-p.exited:
		ln.Close()
		a = <-ch
		if a.err != nil {
			t.Fatalf("openssl %s exited (%v) before connecting", p.name, p.waitErr)
		}
	case <-time.After(opBudget):
		ln.Close()
		<-ch
		t.Fatalf("openssl %s did not connect within %v", p.name, opBudget)
	}
	require.NoError(t, a.err)
	c := Server(a.c, cfg, opts...)
	t.Cleanup(func() { c.Close() })
	handshakeWithin(t, c)
	return c
}

func handshakeWithin(t testing.TB, c *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opBudget)
	defer cancel()
	require.NoError(t, c.HandshakeContext(ctx), "handshake with openssl")
}

// osslConn describes one connection between tlsconn and OpenSSL.
type osslConn struct {
	role role
	cfg  *tls.Config // tlsconn's; clientConfig or serverConfig if nil
	opts []Option
	rsa  bool     // s_server presents the RSA certificate
	msgs bool     // OpenSSL logs its messages (ossl.msgs)
	args []string // more arguments for openssl
}

// connect makes the connection described by o and runs the handshake.
func connect(t testing.TB, f testcert.Files, o osslConn) (*Conn, *ossl) {
	t.Helper()
	cfg := o.cfg
	if o.role == weClient {
		if cfg == nil {
			cfg = clientConfig(t)
		}
		p, addr := startServer(t, f, o.rsa, 1, o.msgs, o.args...)
		return dialOurs(t, addr, cfg, o.opts...), p
	}
	if cfg == nil {
		cfg = serverConfig(t)
	}
	ln := listenOurs(t)
	p := startClient(t, f, ln.Addr().String(), o.msgs, o.args...)
	return acceptOurs(t, ln, p, cfg, o.opts...), p
}

// requireNotPinning fails if crypto/tls carries c's data.
func requireNotPinning(t testing.TB, c *Conn) {
	t.Helper()
	require.False(t, c.Pinning(), "pinning: %v", c.PinningReason())
}

// ---------------------------------------------------------------- tests

// osslSuite is a cipher suite and how to make OpenSSL use it.
type osslSuite struct {
	name    string
	id      uint16
	tls13   bool
	openssl string // -ciphersuites (TLS 1.3) or -cipher (TLS 1.2)
	rsa     bool   // needs the RSA certificate
	chacha  bool   // tlsconn gets x/crypto's ChaCha20-Poly1305
	pinning bool   // crypto/tls must keep carrying the data
	big     bool   // TestOpenSSLSuites sends 1 MiB each way (all suites: 100 kB)
}

// args are the OpenSSL arguments that select s.
func (s osslSuite) args() []string {
	if s.tls13 {
		return []string{"-tls1_3", "-ciphersuites", s.openssl}
	}
	return []string{"-tls1_2", "-cipher", s.openssl}
}

// config returns tlsconn's config for s in role r.
func (s osslSuite) config(t testing.TB, r role) *tls.Config {
	var cfg *tls.Config
	if r == weClient {
		cfg = clientConfig(t)
	} else {
		cfg = serverConfig(t)
		if s.rsa {
			rsaCert, err := testPKI(t).ServerRSA()
			require.NoError(t, err)
			cfg.Certificates = []tls.Certificate{rsaCert}
		}
	}
	if !s.tls13 {
		cfg.MaxVersion = tls.VersionTLS12
		// Some of these are off by default in crypto/tls (RSA key
		// exchange, CBC): allow exactly the one under test.
		cfg.CipherSuites = []uint16{s.id}
	}
	return cfg
}

func (s osslSuite) options() []Option {
	if s.chacha {
		return []Option{WithChaCha20Poly1305(chacha20poly1305.New)}
	}
	return nil
}

var (
	tls13AES128 = osslSuite{name: "TLS13-AES128-GCM", id: tls.TLS_AES_128_GCM_SHA256, tls13: true, openssl: "TLS_AES_128_GCM_SHA256", big: true}
	tls13AES256 = osslSuite{name: "TLS13-AES256-GCM", id: tls.TLS_AES_256_GCM_SHA384, tls13: true, openssl: "TLS_AES_256_GCM_SHA384"}
	tls13ChaCha = osslSuite{name: "TLS13-CHACHA20/x-crypto", id: tls.TLS_CHACHA20_POLY1305_SHA256, tls13: true, openssl: "TLS_CHACHA20_POLY1305_SHA256", chacha: true, big: true}
	tls12AES128 = osslSuite{name: "ECDHE-ECDSA-AES128-GCM-SHA256", id: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, openssl: "ECDHE-ECDSA-AES128-GCM-SHA256", big: true}

	osslSuites = []osslSuite{
		tls13AES128,
		tls13AES256,
		tls13ChaCha,
		{name: "TLS13-CHACHA20/none", id: tls.TLS_CHACHA20_POLY1305_SHA256, tls13: true, openssl: "TLS_CHACHA20_POLY1305_SHA256", pinning: true, big: true},
		tls12AES128,
		{name: "ECDHE-ECDSA-AES256-GCM-SHA384", id: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, openssl: "ECDHE-ECDSA-AES256-GCM-SHA384"},
		{name: "ECDHE-ECDSA-CHACHA20-POLY1305/x-crypto", id: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, openssl: "ECDHE-ECDSA-CHACHA20-POLY1305", chacha: true, big: true},
		{name: "ECDHE-ECDSA-CHACHA20-POLY1305/none", id: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, openssl: "ECDHE-ECDSA-CHACHA20-POLY1305", pinning: true},
		{name: "ECDHE-RSA-AES128-GCM-SHA256", id: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, openssl: "ECDHE-RSA-AES128-GCM-SHA256", rsa: true},
		{name: "ECDHE-RSA-AES256-GCM-SHA384", id: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, openssl: "ECDHE-RSA-AES256-GCM-SHA384", rsa: true, big: true},
		{name: "ECDHE-RSA-CHACHA20-POLY1305/x-crypto", id: tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, openssl: "ECDHE-RSA-CHACHA20-POLY1305", rsa: true, chacha: true},
		{name: "AES128-GCM-SHA256", id: tls.TLS_RSA_WITH_AES_128_GCM_SHA256, openssl: "AES128-GCM-SHA256", rsa: true},
		{name: "ECDHE-ECDSA-AES128-SHA/cbc", id: tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, openssl: "ECDHE-ECDSA-AES128-SHA", pinning: true, big: true},
		{name: "ECDHE-RSA-AES256-SHA/cbc", id: tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, openssl: "ECDHE-RSA-AES256-SHA", rsa: true, pinning: true},
	}
)

// TestOpenSSLSuites exchanges random data of 1 B to 100 kB each way (and 1
// MiB for a suite of each kind) with OpenSSL in both roles, for every TLS
// 1.3 suite and the TLS 1.2 AEAD suites (carried by tlsconn's record
// layer), ChaCha20-Poly1305 without an implementation and CBC suites
// (carried by crypto/tls, reported by Pinning).
func TestOpenSSLSuites(t *testing.T) {
	f := pemFiles(t)
	for _, s := range osslSuites {
		sizes := []int{1, 100, 8183, 8184, 8185, 100000} // frames around 16 KiB: 16382, 16384, 16386 bytes
		if s.big {
			sizes = append(sizes, 1<<20)
		}
		for _, r := range roles {
			t.Run(s.name+"/"+r.String(), func(t *testing.T) {
				t.Parallel()
				pool := debugPool()
				c, p := connect(t, f, osslConn{role: r, cfg: s.config(t, r), rsa: s.rsa,
					opts: append(s.options(), WithPool(pool)), args: s.args()})
				st := c.ConnectionState()
				require.Equal(t, tls.CipherSuiteName(s.id), tls.CipherSuiteName(st.CipherSuite))
				if s.tls13 {
					require.Equal(t, uint16(tls.VersionTLS13), st.Version)
				} else {
					require.Equal(t, uint16(tls.VersionTLS12), st.Version)
				}
				require.Equal(t, s.pinning, c.Pinning(), "reason: %v", c.PinningReason())
				if s.pinning {
					require.ErrorIs(t, c.PinningReason(), errHandoff)
				}
				for _, n := range sizes {
					p.exchange(c, n)
				}
				require.NoError(t, c.Close())
				assert.Zero(t, pool.Stats().InUseBytes, "pool bytes in use after Close")
			})
		}
	}
}

// TestOpenSSLServerNoTickets: a tlsconn server without session tickets sends
// no NewSessionTicket, so its first record of data has sequence number 0.
func TestOpenSSLServerNoTickets(t *testing.T) {
	f := pemFiles(t)
	for _, s := range []osslSuite{tls13AES128, tls12AES128} {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			cfg := s.config(t, weServer)
			cfg.SessionTicketsDisabled = true
			c, p := connect(t, f, osslConn{role: weServer, cfg: cfg, args: s.args()})
			requireNotPinning(t, c)
			p.exchange(c, 1000)
			p.toPeer(c, 20000)
			p.fromPeer(c, 20000)
		})
	}
}

// keyUpdateMsg matches a KeyUpdate in OpenSSL's -msg log: sent (>>>) or
// received (<<<), with request_update req.
func keyUpdateMsg(sent bool, req byte) *regexp.Regexp {
	return osslMsg(sent, "TLS 1.3, Handshake [length 0005], KeyUpdate", fmt.Sprintf("18 00 00 01 %02x", req))
}

// osslMsg matches a message in OpenSSL's -msg log, sent (>>>) or received
// (<<<): its description line, then its bytes in hex.
func osslMsg(sent bool, desc, hex string) *regexp.Regexp {
	dir := "<<<"
	if sent {
		dir = ">>>"
	}
	return regexp.MustCompile(regexp.QuoteMeta(dir+" "+desc+"\n") + `\s+` + regexp.QuoteMeta(hex) + `\n`)
}

// trafficSecrets returns c's current TLS 1.3 read and write traffic
// secrets. No Read or Write may be in progress.
func trafficSecrets(c *Conn) (in, out [maxSecretLen]byte) {
	c.rmu.Lock()
	in = c.in.secret
	c.rmu.Unlock()
	c.wmu.Lock()
	out = c.out.secret
	c.wmu.Unlock()
	return in, out
}

// TestOpenSSLKeyUpdate runs KeyUpdates in both directions with OpenSSL in
// both roles, for each TLS 1.3 suite (their hashes differ): OpenSSL's k
// (update_not_requested) and K (update_requested) commands, and tlsconn's
// own with and without request. After each, data must flow both ways, each
// side's traffic secret must have changed exactly when it should, and
// OpenSSL's log must show the KeyUpdates it sent and received.
func TestOpenSSLKeyUpdate(t *testing.T) {
	f := pemFiles(t)
	var (
		osslSent0, osslSent1 = keyUpdateMsg(true, 0), keyUpdateMsg(true, 1)
		osslGot0, osslGot1   = keyUpdateMsg(false, 0), keyUpdateMsg(false, 1)
	)
	for _, v := range []struct {
		s osslSuite
		// cache gives a tlsconn client a ClientSessionCache: the
		// first KeyUpdate then arrives while tlsconn hands the
		// tickets that came before it to crypto/tls.
		cache bool
		pad   bool // OpenSSL pads its records, KeyUpdates too
	}{{tls13AES128, false, false}, {tls13AES256, true, false}, {tls13ChaCha, false, true}} {
		s := v.s
		name := s.name
		args := s.args()
		if v.cache {
			name += "+session-cache"
		}
		if v.pad {
			name += "+padding"
			args = append(args, "-record_padding", "512")
		}
		for _, r := range roles {
			t.Run(name+"/"+r.String(), func(t *testing.T) {
				t.Parallel()
				cfg := s.config(t, r)
				if v.cache && r == weClient {
					cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				}
				c, p := connect(t, f, osslConn{role: r, cfg: cfg, opts: s.options(), msgs: true, args: args})
				requireNotPinning(t, c)
				if r == weClient {
					// s_server takes commands once its handshake is done.
					p.waitOut(&p.stdout, 0, "CIPHER is")
				}
				// counts of each kind of KeyUpdate in OpenSSL's log
				sent0, sent1, got0, got1 := 0, 0, 0, 0
				checkCounts := func(step string) {
					t.Helper()
					assert.Equal(t, []int{sent0, sent1, got0, got1},
						[]int{p.countMsgs(osslSent0), p.countMsgs(osslSent1), p.countMsgs(osslGot0), p.countMsgs(osslGot1)},
						"%s: KeyUpdates OpenSSL sent (not requested, requested) and received (not requested, requested)", step)
				}
				// osslCommand sends k or K and waits until OpenSSL has
				// taken it: no data may follow it into the same read.
				osslCommand := func(cmd string, sentRe *regexp.Regexp, n int) {
					t.Helper()
					if r == weClient { // s_server sends the KeyUpdate at once
						p.command(cmd)
						p.waitMsgs(sentRe, n)
						return
					}
					from := len(p.stderr.String())
					p.command(cmd)
					p.waitOut(&p.stderr, from, "KEYUPDATE\n") // s_client's log of the command
				}
				for round := range 2 {
					t.Logf("round %d", round)

					// OpenSSL: KeyUpdate, update_not_requested.
					in0, out0 := trafficSecrets(c)
					osslCommand("k", osslSent0, sent0+1)
					sent0++
					p.fromPeer(c, 1000)
					p.toPeer(c, 1000)
					in1, out1 := trafficSecrets(c)
					require.NotEqual(t, in0, in1, "k: read key not updated")
					require.Equal(t, out0, out1, "k: write key updated though not requested")
					checkCounts("after k")

					// OpenSSL: KeyUpdate, update_requested. tlsconn
					// answers before its next record of data.
					osslCommand("K", osslSent1, sent1+1)
					sent1++
					p.fromPeer(c, 1000)
					in2, _ := trafficSecrets(c)
					require.NotEqual(t, in1, in2, "K: read key not updated")
					p.toPeer(c, 1000) // OpenSSL reads it under tlsconn's new key
					got0++
					_, out2 := trafficSecrets(c)
					require.NotEqual(t, out1, out2, "K: write key not updated")
					checkCounts("after K")
					p.exchange(c, 1000)

					// tlsconn: KeyUpdate, update_not_requested.
					in3, out3 := trafficSecrets(c)
					require.NoError(t, c.keyUpdateNow(false))
					_, out4 := trafficSecrets(c)
					require.NotEqual(t, out3, out4, "keyUpdateNow(false): write key not updated")
					p.toPeer(c, 1000)
					got0++
					p.fromPeer(c, 1000)
					in4, _ := trafficSecrets(c)
					require.Equal(t, in3, in4, "keyUpdateNow(false): OpenSSL updated its key")
					checkCounts("after keyUpdateNow(false)")

					// tlsconn: KeyUpdate, update_requested. OpenSSL
					// answers; tlsconn reads its data under the new key.
					require.NoError(t, c.keyUpdateNow(true))
					_, out5 := trafficSecrets(c)
					require.NotEqual(t, out4, out5, "keyUpdateNow(true): write key not updated")
					p.toPeer(c, 1000)
					got1++
					p.fromPeer(c, 1000)
					sent0++
					p.waitMsgs(osslSent0, sent0)
					in5, out6 := trafficSecrets(c)
					require.NotEqual(t, in4, in5, "keyUpdateNow(true): OpenSSL's answering KeyUpdate not processed")
					require.Equal(t, out5, out6, "keyUpdateNow(true): tlsconn answered OpenSSL's update_not_requested")
					p.exchange(c, 1000)
					checkCounts("after keyUpdateNow(true)")
				}
				p.exchange(c, 100000)
			})
		}
	}
}

// TestOpenSSLRekeyAfter makes tlsconn replace its write key every few
// records (rekeyAfter), so that a 1 MiB transfer to OpenSSL crosses dozens
// of KeyUpdates, in both roles. It changes a package variable, so it does
// not run in parallel (parallel tests run after it).
func TestOpenSSLRekeyAfter(t *testing.T) {
	f := pemFiles(t)
	old := rekeyAfter
	rekeyAfter = 4
	t.Cleanup(func() { rekeyAfter = old })
	got0 := keyUpdateMsg(false, 0)
	for _, r := range roles {
		t.Run(r.String(), func(t *testing.T) {
			c, p := connect(t, f, osslConn{role: r, cfg: tls13AES128.config(t, r), msgs: true, args: tls13AES128.args()})
			requireNotPinning(t, c)
			p.exchange(c, 100)
			before := p.countMsgs(got0)
			p.toPeer(c, 1<<20)
			records := (2<<20 + maxPlaintext - 1) / maxPlaintext
			after := p.countMsgs(got0)
			assert.GreaterOrEqual(t, after-before, records/int(rekeyAfter)-1, "KeyUpdates OpenSSL received during %d records", records)
			p.fromPeer(c, 100000)
			p.exchange(c, 1000)
		})
	}
}

// recordHeaderMsg matches an application data record header in OpenSSL's
// -msg log, sent or received, with body length n.
func recordHeaderMsg(sent bool, n int) *regexp.Regexp {
	return osslMsg(sent, "TLS 1.2, RecordHeader [length 0005]", fmt.Sprintf("17 03 03 %02x %02x", n>>8, n&0xff))
}

// TestOpenSSLRecordPadding: OpenSSL pads every TLS 1.3 record it sends to a
// multiple of 512 bytes (-record_padding 512); tlsconn strips the padding.
func TestOpenSSLRecordPadding(t *testing.T) {
	f := pemFiles(t)
	for _, s := range []osslSuite{tls13AES128, tls13ChaCha} {
		for _, r := range roles {
			t.Run(s.name+"/"+r.String(), func(t *testing.T) {
				t.Parallel()
				c, p := connect(t, f, osslConn{role: r, cfg: s.config(t, r), opts: s.options(), msgs: true,
					args: append(s.args(), "-record_padding", "512")})
				requireNotPinning(t, c)
				padded := recordHeaderMsg(true, 512+16) // inner plaintext padded to 512, and the tag
				for _, n := range []int{1, 100, 247, 248, 249, 8184, 100000} {
					p.fromPeer(c, n)
				}
				assert.Positive(t, p.countMsgs(padded), "no record padded to 512 bytes in OpenSSL's log")
				p.exchange(c, 1000)
			})
		}
	}
}

// readSeq returns the sequence number of the next record c reads. No Read
// may be in progress.
func readSeq(c *Conn) uint64 {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.in.seq
}

// TestOpenSSLMaxSendFrag: OpenSSL sends records of at most 512 bytes of
// plaintext (-max_send_frag 512), some 4000 of them for a 1 MiB transfer
// (TLS 1.3; 1000 for 256 KiB with TLS 1.2).
func TestOpenSSLMaxSendFrag(t *testing.T) {
	f := pemFiles(t)
	for _, s := range []osslSuite{tls13AES128, tls12AES128} {
		for _, r := range roles {
			t.Run(s.name+"/"+r.String(), func(t *testing.T) {
				t.Parallel()
				c, p := connect(t, f, osslConn{role: r, cfg: s.config(t, r),
					args: append(s.args(), "-max_send_frag", "512")})
				requireNotPinning(t, c)
				p.exchange(c, 100)
				size := 1 << 20
				if !s.tls13 {
					size = 256 << 10
				}
				seq0 := readSeq(c)
				p.fromPeer(c, size)
				assert.GreaterOrEqual(t, readSeq(c)-seq0, uint64(2*size/512), "records tlsconn read")
				p.exchange(c, 100000)
			})
		}
	}
}

// TestOpenSSLHelloRetryRequest: the server accepts no key share the client
// sent first, so it asks for another with a HelloRetryRequest (two
// ClientHellos in OpenSSL's log); the record layer takes over after it.
func TestOpenSSLHelloRetryRequest(t *testing.T) {
	f := pemFiles(t)
	for _, r := range roles {
		t.Run(r.String(), func(t *testing.T) {
			t.Parallel()
			o := osslConn{role: r, msgs: true}
			clientHello := regexp.MustCompile(`(?m)^>>> TLS 1\.3, Handshake \[length [0-9a-f]+\], ClientHello$`)
			if r == weClient {
				// crypto/tls sends X25519MLKEM768 and X25519 key shares.
				o.args = []string{"-groups", "P-384"}
				clientHello = regexp.MustCompile(`(?m)^<<< TLS 1\.3, Handshake \[length [0-9a-f]+\], ClientHello$`)
			} else {
				// s_client sends a key share for its first group only.
				o.cfg = serverConfig(t)
				o.cfg.CurvePreferences = []tls.CurveID{tls.X25519}
				o.args = []string{"-groups", "P-256:X25519"}
			}
			c, p := connect(t, f, o)
			requireNotPinning(t, c)
			require.Equal(t, uint16(tls.VersionTLS13), c.ConnectionState().Version)
			p.exchange(c, 100)
			require.Equal(t, 2, p.countMsgs(clientHello), "ClientHellos in OpenSSL's log: no HelloRetryRequest")
			p.exchange(c, 100000)
		})
	}
}

// TestOpenSSLClientAuth: client certificates in both roles, TLS 1.2 and 1.3
// (in TLS 1.3 a Go server sends its tickets only after the client's
// Finished).
func TestOpenSSLClientAuth(t *testing.T) {
	f := pemFiles(t)
	for _, s := range []osslSuite{tls13AES128, tls12AES128} {
		for _, r := range roles {
			t.Run(s.name+"/"+r.String(), func(t *testing.T) {
				t.Parallel()
				cfg := s.config(t, r)
				o := osslConn{role: r, cfg: cfg, args: s.args()}
				if r == weClient {
					cfg.Certificates = []tls.Certificate{testPKI(t).Client}
					o.args = append(o.args, "-Verify", "1", "-CAfile", f.CA, "-verify_return_error")
				} else {
					cfg.ClientAuth = tls.RequireAndVerifyClientCert
					cfg.ClientCAs = testPKI(t).Pool
					o.args = append(o.args, "-cert", f.ClientCert, "-key", f.ClientKey)
				}
				c, p := connect(t, f, o)
				requireNotPinning(t, c)
				p.exchange(c, 1000)
				if r == weClient {
					p.waitOut(&p.stdout, 0, "subject=CN = client")
				} else {
					require.NotEmpty(t, c.ConnectionState().PeerCertificates)
					require.Equal(t, "client", c.ConnectionState().PeerCertificates[0].Subject.CommonName)
				}
				p.exchange(c, 100000)
			})
		}
	}
}

// TestOpenSSLResumption resumes sessions by ticket, TLS 1.2 and 1.3: an
// OpenSSL client (-sess_out, then -sess_in) against a tlsconn server, and a
// tlsconn client with a ClientSessionCache against s_server (tlsconn hands
// the TLS 1.3 tickets that arrive after the handshake to crypto/tls).
func TestOpenSSLResumption(t *testing.T) {
	f := pemFiles(t)
	for _, v := range []struct {
		s   osslSuite
		pad bool // OpenSSL pads its records: the tickets s_server sends too
	}{{tls13AES128, false}, {tls12AES128, false}, {tls13AES128, true}} {
		s, name, args := v.s, v.s.name, v.s.args()
		if v.pad {
			name += "+padding"
			args = append(args, "-record_padding", "512")
		}
		version := "TLSv1.3"
		if !s.tls13 {
			version = "TLSv1.2"
		}
		t.Run(name+"/"+weServer.String(), func(t *testing.T) {
			t.Parallel()
			cfg := s.config(t, weServer) // one config: one set of ticket keys
			sess := filepath.Join(t.TempDir(), "session.pem")
			ln := listenOurs(t)

			p1 := startClient(t, f, ln.Addr().String(), false, append(args, "-sess_out", sess)...)
			c1 := acceptOurs(t, ln, p1, cfg)
			requireNotPinning(t, c1)
			require.False(t, c1.ConnectionState().DidResume)
			p1.exchange(c1, 1000)
			p1.waitOut(&p1.stdout, 0, "New, "+version)
			require.NoError(t, p1.stdin.Close()) // s_client sends close_notify and exits
			requireEOF(t, c1)
			c1.Close() // s_client waits up to 0.5 s for the peer to close
			require.NoError(t, p1.waitExit())
			b, err := os.ReadFile(sess)
			require.NoError(t, err)
			require.Contains(t, string(b), "BEGIN SSL SESSION PARAMETERS")

			p2 := startClient(t, f, ln.Addr().String(), false, append(args, "-sess_in", sess)...)
			c2 := acceptOurs(t, ln, p2, cfg)
			require.True(t, c2.ConnectionState().DidResume, "tlsconn server did not resume OpenSSL's session")
			p2.waitOut(&p2.stdout, 0, "Reused, "+version)
			p2.exchange(c2, 100000)
			requireNotPinningResumed(t, c2)
		})
		t.Run(name+"/"+weClient.String(), func(t *testing.T) {
			t.Parallel()
			cfg := s.config(t, weClient)
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			p, addr := startServer(t, f, false, 2, false, args...)

			c1 := dialOurs(t, addr, cfg)
			requireNotPinning(t, c1)
			require.False(t, c1.ConnectionState().DidResume)
			p.exchange(c1, 1000) // tlsconn reads the tickets before the data
			require.NoError(t, c1.Close())
			first := p.waitOut(&p.stdout, p.outPos, "DONE\n") // s_server saw the close_notify

			c2 := dialOurs(t, addr, cfg)
			require.True(t, c2.ConnectionState().DidResume, "tlsconn client did not resume its session with s_server")
			p.exchange(c2, 100000)
			p.waitOut(&p.stdout, first, "Reused session-id")
			requireNotPinningResumed(t, c2)
		})
	}
}

// requireNotPinningResumed is requireNotPinning for a resumed connection:
// TLS 1.2 resumptions too (crypto/tls logs no master secret for them; the
// session's secret comes from the SessionState).
func requireNotPinningResumed(t *testing.T, c *Conn) {
	t.Helper()
	requireNotPinning(t, c)
}

// requireEOF checks that c's Read returns io.EOF itself (the peer's
// close_notify) and keeps returning it.
func requireEOF(t testing.TB, c *Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(opBudget)))
	var b [100]byte
	for range 2 {
		n, err := c.Read(b[:])
		require.Zero(t, n)
		require.True(t, err == io.EOF, "Read after close_notify: %v, want io.EOF", err)
	}
}

// TestOpenSSLCloseNotify closes connections both ways: OpenSSL's Q command
// and the end of its stdin send close_notify, on which tlsconn's Read
// returns io.EOF; tlsconn's Close and CloseWrite send one, which OpenSSL
// takes as a clean end (SSL_ERROR_ZERO_RETURN: s_server prints DONE,
// s_client "closed") rather than an unexpected EOF.
func TestOpenSSLCloseNotify(t *testing.T) {
	f := pemFiles(t)
	for _, v := range []struct {
		name string
		s    osslSuite
		pad  bool // OpenSSL pads its records, alerts too
	}{{tls13AES128.name, tls13AES128, false}, {tls12AES128.name, tls12AES128, false}, {tls13AES128.name + "+padding", tls13AES128, true}} {
		s := v.s
		args := s.args()
		if v.pad {
			args = append(args, "-record_padding", "512")
		}
		for _, r := range roles {
			clean := "DONE\n" // s_server
			if r == weServer {
				clean = "closed\n" // s_client
			}
			for _, how := range []string{"openssl-Q", "openssl-stdin-EOF", "tlsconn-Close", "tlsconn-CloseWrite"} {
				t.Run(v.name+"/"+r.String()+"/"+how, func(t *testing.T) {
					t.Parallel()
					c, p := connect(t, f, osslConn{role: r, cfg: s.config(t, r), args: args})
					requireNotPinning(t, c)
					p.exchange(c, 1000)
					switch how {
					case "openssl-Q":
						p.command("Q")
						requireEOF(t, c)
					case "openssl-stdin-EOF":
						require.NoError(t, p.stdin.Close())
						requireEOF(t, c)
					case "tlsconn-Close":
						require.NoError(t, c.Close())
						p.waitOut(&p.stdout, p.outPos, clean)
					case "tlsconn-CloseWrite":
						require.NoError(t, c.CloseWrite())
						p.waitOut(&p.stdout, p.outPos, clean)
						_, err := c.Write([]byte("x"))
						require.Error(t, err, "Write after CloseWrite")
						requireEOF(t, c) // OpenSSL answers with its own close_notify
					}
					c.Close() // s_client waits up to 0.5 s for the peer to close
					require.NoError(t, p.waitExit(), "openssl's exit status")
					assert.NotContains(t, p.stderr.String(), "unexpected eof", "OpenSSL saw no close_notify")
				})
			}
		}
	}
}

// TestOpenSSLDataRightAfterHandshake: OpenSSL has data to send before the
// connection exists, so its first record of data follows its last
// handshake message at once, likely in the same TCP segment (a TLS 1.2
// server's Finished, a TLS 1.3 client's Finished, a TLS 1.3 server's
// tickets): crypto/tls must not have read it during the handshake, and
// tlsconn must deliver it.
func TestOpenSSLDataRightAfterHandshake(t *testing.T) {
	f := pemFiles(t)
	for _, s := range []osslSuite{tls13AES128, tls12AES128} {
		for _, r := range roles {
			t.Run(s.name+"/"+r.String(), func(t *testing.T) {
				t.Parallel()
				var c *Conn
				var p *ossl
				var first []byte
				var errc <-chan error
				queue := func() { // before the handshake
					p.ids++
					first = frameOf(p.ids, randBytes(5000))
					errc = goWrite(p.stdin, first)
				}
				if r == weClient {
					var addr string
					p, addr = startServer(t, f, false, 1, false, s.args()...)
					queue()
					c = dialOurs(t, addr, s.config(t, r))
				} else {
					ln := listenOurs(t)
					p = startClient(t, f, ln.Addr().String(), false, s.args()...)
					queue()
					c = acceptOurs(t, ln, p, s.config(t, r))
				}
				requireNotPinning(t, c)
				readExact(t, c, first, false)
				require.NoError(t, <-errc)
				p.exchange(c, 100000)
			})
		}
	}
}

// TestOpenSSLRenegotiationRefused: renegotiation (TLS 1.2) started by
// OpenSSL in either role is refused with an error on tlsconn's Read, as
// crypto/tls does by default; OpenSSL learns it from an alert.
func TestOpenSSLRenegotiationRefused(t *testing.T) {
	f := pemFiles(t)
	for _, r := range roles {
		t.Run(r.String(), func(t *testing.T) {
			t.Parallel()
			c, p := connect(t, f, osslConn{role: r, cfg: tls12AES128.config(t, r), args: tls12AES128.args()})
			requireNotPinning(t, c)
			p.exchange(c, 1000)
			want := tls.AlertError(alertUnexpectedMessage) // a ClientHello to a server
			if r == weClient {
				p.command("r") // s_server: HelloRequest
				want = tls.AlertError(alertNoRenegotiation)
			} else {
				p.command("R") // s_client: ClientHello
			}
			require.NoError(t, c.SetReadDeadline(time.Now().Add(opBudget)))
			var b [100]byte
			n, err := c.Read(b[:])
			require.Zero(t, n)
			require.ErrorIs(t, err, want)
			_, err2 := c.Read(b[:])
			require.Equal(t, err, err2, "sticky error")
			p.waitOut(&p.stderr, 0, strings.ReplaceAll(strings.TrimPrefix(want.Error(), "tls: "), "_", " "))
		})
	}
}

// TestOpenSSLExportKeyingMaterial: ConnectionState().ExportKeyingMaterial
// (RFC 5705, RFC 8446 section 7.5) agrees with OpenSSL's -keymatexport.
func TestOpenSSLExportKeyingMaterial(t *testing.T) {
	f := pemFiles(t)
	for _, s := range []osslSuite{tls13AES256, tls12AES128} {
		for _, r := range roles {
			t.Run(s.name+"/"+r.String(), func(t *testing.T) {
				t.Parallel()
				const label = "EXPERIMENTAL-readyconn"
				c, p := connect(t, f, osslConn{role: r, cfg: s.config(t, r),
					args: append(s.args(), "-keymatexport", label, "-keymatexportlen", "32")})
				requireNotPinning(t, c)
				p.exchange(c, 100)
				st := c.ConnectionState()
				ekm, err := st.ExportKeyingMaterial(label, nil, 32)
				require.NoError(t, err)
				p.waitOut(&p.stdout, 0, fmt.Sprintf("Keying material: %X\n", ekm))
			})
		}
	}
}

// fakeTB records what opensslBin reports instead of ending a test.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

type fakeTBStop struct{}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	panic(fakeTBStop{})
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skip = fmt.Sprintf(format, args...)
	panic(fakeTBStop{})
}

func (f *fakeTB) run(fn func(testing.TB)) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fakeTBStop); !ok {
				panic(r)
			}
		}
	}()
	fn(f)
}

// TestOpenSSLMissing: without an openssl command the OpenSSL tests fail
// and say how to install it, or skip with READYCONN_INTEROP=skip.
func TestOpenSSLMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(interopEnv, "")
	f := &fakeTB{TB: t}
	f.run(func(tb testing.TB) { opensslBin(tb) })
	assert.Contains(t, f.fatal, "apt-get install openssl")
	assert.Empty(t, f.skip)

	t.Setenv(interopEnv, "skip")
	f = &fakeTB{TB: t}
	f.run(func(tb testing.TB) { opensslBin(tb) })
	assert.Empty(t, f.fatal)
	assert.Contains(t, f.skip, interopEnv+"=skip")
}
