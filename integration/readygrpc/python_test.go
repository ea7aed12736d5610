package readygrpc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// gRPC C-core, through Python's grpcio (Debian: python3-grpcio), is the
// gRPC implementation these tests talk to that is neither grpc-go nor
// crypto/tls. The scripts are in testdata.

// pythonPath is Debian's Python, for which python3-grpcio is packaged.
const pythonPath = "/usr/bin/python3"

var (
	pythonOnce sync.Once
	pythonErr  error
)

// requirePythonGRPC fails the test unless pythonPath can import grpc, or
// skips it when READYCONN_INTEROP=skip (systems where CI does not install
// python3-grpcio).
func requirePythonGRPC(t *testing.T) {
	t.Helper()
	pythonOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opBudget)
		defer cancel()
		out, err := exec.CommandContext(ctx, pythonPath, "-c", "import grpc; print(grpc.__version__)").CombinedOutput()
		if err != nil {
			pythonErr = fmt.Errorf("%s cannot import grpc (%v: %s)", pythonPath, err, bytes.TrimSpace(out))
		}
	})
	if pythonErr == nil {
		return
	}
	msg, skip := pythonProblem(pythonErr, os.Getenv("READYCONN_INTEROP"))
	if skip {
		t.Skip(msg)
	}
	t.Fatal(msg)
}

// pythonProblem says what to do when Python's grpcio is unusable (err),
// given the value of READYCONN_INTEROP: skip only if it is "skip".
func pythonProblem(err error, env string) (msg string, skip bool) {
	msg = fmt.Sprintf("interoperability with gRPC C-core needs Python's grpcio: %v; install it with `apt-get install python3-grpcio`", err)
	if env == "skip" {
		return msg + " (skipped: READYCONN_INTEROP=skip)", true
	}
	return msg + ", or set READYCONN_INTEROP=skip to skip these tests", false
}

// rawCodec passes messages through as bytes, as the Python scripts'
// identity (de)serializers do. Messages are *[]byte. Its name is "proto"
// so that the content-type is the one every gRPC implementation expects.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }

func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// peerCN returns the common name of the client certificate of the call,
// or "" if there is none.
func peerCN(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return ""
	}
	return info.State.PeerCertificates[0].Subject.CommonName
}

// echoService is the Go side of the service of testdata/grpc_echo_*.py:
// Unary and every message of Stream are answered with
// "go:" + client certificate common name + ":" + the request.
var echoService = grpc.ServiceDesc{
	ServiceName: "readyconn.interop.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req []byte
			if err := dec(&req); err != nil {
				return nil, err
			}
			resp := append([]byte("go:"+peerCN(ctx)+":"), req...)
			return &resp, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			prefix := "go:" + peerCN(stream.Context()) + ":"
			for {
				var req []byte
				if err := stream.RecvMsg(&req); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				resp := append([]byte(prefix), req...)
				if err := stream.SendMsg(&resp); err != nil {
					return err
				}
			}
		},
	}},
}

// configs returns the client and server configurations of the PKI in f.
func (f pemFiles) configs(t *testing.T, mutual bool) (client, server *tls.Config) {
	t.Helper()
	ca, err := os.ReadFile(f.CA)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca))
	serverCert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	require.NoError(t, err)
	client = &tls.Config{RootCAs: pool}
	server = &tls.Config{Certificates: []tls.Certificate{serverCert}}
	if mutual {
		clientCert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
		require.NoError(t, err)
		client.Certificates = []tls.Certificate{clientCert}
		server.ClientAuth = tls.RequireAndVerifyClientCert
		server.ClientCAs = pool
	}
	return client, server
}

// pythonVariant is one set-up of a Go–Python test.
type pythonVariant struct {
	name   string
	mutual bool // mutual TLS
	tls12  bool // the Go end limited to TLS 1.2
}

var pythonVariants = []pythonVariant{
	{name: "tls"},
	{name: "mtls", mutual: true},
	{name: "mtls-1.2", mutual: true, tls12: true},
}

// goTLSImpls are the Go ends the Python peers meet: NewTLS, and grpc's own
// TLS credentials as a control that tells a fault of NewTLS from one of
// the set-up.
var goTLSImpls = []tlsImpl{readyTLS, stockTLS}

// TestPythonClient runs gRPC C-core as the client of a Go server.
func TestPythonClient(t *testing.T) {
	requirePythonGRPC(t)
	files := writePEM(t, "python")
	for _, impl := range goTLSImpls {
		for _, v := range pythonVariants {
			t.Run("server="+impl.name+"/"+v.name, func(t *testing.T) {
				_, scfg := files.configs(t, v.mutual)
				if v.tls12 {
					scfg.MaxVersion = tls.VersionTLS12
				}
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				srv := grpc.NewServer(grpc.Creds(impl.creds(scfg)), grpc.ForceServerCodec(rawCodec{}))
				srv.RegisterService(&echoService, struct{}{})
				done := make(chan struct{})
				go func() { defer close(done); srv.Serve(lis) }()
				defer func() { srv.Stop(); <-done }()

				args := []string{filepath.Join("testdata", "grpc_echo_client.py"), lis.Addr().String(), files.CA, "go::"}
				if v.mutual {
					args = append(args[:3], "go:client:", files.ClientCert, files.ClientKey)
				}
				ctx, cancel := context.WithTimeout(context.Background(), opBudget)
				defer cancel()
				cmd := exec.CommandContext(ctx, pythonPath, args...)
				cmd.WaitDelay = 5 * time.Second
				out, err := cmd.CombinedOutput()
				require.NoError(t, err, "the Python client failed:\n%s", out)
				assert.Contains(t, string(out), "ok unary 1048576")
				assert.Contains(t, string(out), "ok stream 12 messages")
			})
		}
	}
}

// syncBuffer is a bytes.Buffer for a subprocess's output that reports the
// port its first "PORT <n>" line announces.
type syncBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	port chan int
	sent bool
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if !b.sent {
		sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
		for sc.Scan() {
			if n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "PORT ")); err == nil {
				b.port <- n
				b.sent = true
				break
			}
		}
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// pythonServer is a running testdata/grpc_echo_server.py.
type pythonServer struct {
	addr   string
	cmd    *exec.Cmd
	stdin  io.Closer
	out    *syncBuffer
	exited chan error
}

// startPythonServer starts testdata/grpc_echo_server.py and waits until it
// serves. When the test ends, it closes the server's stdin and fails the
// test unless the server stops cleanly within opBudget.
func startPythonServer(t *testing.T, files pemFiles, mutual bool) *pythonServer {
	t.Helper()
	args := []string{filepath.Join("testdata", "grpc_echo_server.py"), files.CA, files.ServerCert, files.ServerKey}
	if mutual {
		args = append(args, "--require-client-cert")
	}
	s := &pythonServer{
		cmd:    exec.Command(pythonPath, args...),
		out:    &syncBuffer{port: make(chan int, 1)},
		exited: make(chan error, 1),
	}
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	stdin, err := s.cmd.StdinPipe()
	require.NoError(t, err)
	s.stdin = stdin
	require.NoError(t, s.cmd.Start())
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() { s.stop(t) })

	select {
	case port := <-s.out.port:
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	case err := <-s.exited:
		s.exited <- err
		t.Fatalf("the Python server exited before serving (%v):\n%s", err, s.out)
	case <-time.After(opBudget):
		t.Fatalf("the Python server did not serve within %v:\n%s", opBudget, s.out)
	}
	return s
}

func (s *pythonServer) stop(t *testing.T) {
	s.stdin.Close()
	select {
	case err := <-s.exited:
		if err != nil {
			t.Errorf("the Python server failed (%v):\n%s", err, s.out)
		} else if !strings.Contains(s.out.String(), "STOPPED") {
			t.Errorf("the Python server did not stop cleanly:\n%s", s.out)
		}
	case <-time.After(opBudget):
		s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("the Python server did not stop within %v:\n%s", opBudget, s.out)
	}
}

// TestPythonServer runs a Go client against gRPC C-core as the server.
func TestPythonServer(t *testing.T) {
	requirePythonGRPC(t)
	files := writePEM(t, "python")
	for _, impl := range goTLSImpls {
		for _, v := range pythonVariants {
			t.Run("client="+impl.name+"/"+v.name, func(t *testing.T) {
				s := startPythonServer(t, files, v.mutual)
				ccfg, _ := files.configs(t, v.mutual)
				if v.tls12 {
					ccfg.MaxVersion = tls.VersionTLS12
				}
				cc, err := grpc.NewClient("passthrough:///"+s.addr,
					grpc.WithTransportCredentials(impl.creds(ccfg)),
					grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
				require.NoError(t, err)
				defer cc.Close()

				prefix := "py::"
				if v.mutual {
					prefix = "py:client:"
				}
				sizes := []int{0, 1, 1000, 16 << 10, 100 << 10, 1 << 20}
				var pr peer.Peer
				for _, n := range sizes {
					req := payload(int32(n)).GetBody()
					var resp []byte
					require.NoError(t, cc.Invoke(opCtx(t), "/readyconn.interop.Echo/Unary", &req, &resp, grpc.Peer(&pr)), "size %d", n)
					require.Equal(t, append([]byte(prefix), req...), resp, "size %d", n)
				}
				info, ok := pr.AuthInfo.(credentials.TLSInfo)
				require.True(t, ok, "%T", pr.AuthInfo)
				assert.Equal(t, "h2", info.State.NegotiatedProtocol)
				if v.tls12 {
					assert.Equal(t, uint16(tls.VersionTLS12), info.State.Version)
				}
				t.Logf("C-core server: %s, %s", tls.VersionName(info.State.Version), tls.CipherSuiteName(info.State.CipherSuite))

				st, err := cc.NewStream(opCtx(t), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/readyconn.interop.Echo/Stream")
				require.NoError(t, err)
				for _, n := range append(sizes, sizes...) {
					req := payload(int32(n)).GetBody()
					require.NoError(t, st.SendMsg(&req))
					var resp []byte
					require.NoError(t, st.RecvMsg(&resp))
					require.Equal(t, append([]byte(prefix), req...), resp, "size %d", n)
				}
				require.NoError(t, st.CloseSend())
				var resp []byte
				assert.Equal(t, io.EOF, st.RecvMsg(&resp))
			})
		}
	}
}

// TestPythonMissing checks what a missing grpcio does: fail, with the
// command that installs it, unless READYCONN_INTEROP=skip.
func TestPythonMissing(t *testing.T) {
	err := errors.New("/usr/bin/python3 cannot import grpc")
	for _, env := range []string{"", "1", "true", "Skip"} {
		msg, skip := pythonProblem(err, env)
		assert.False(t, skip, "READYCONN_INTEROP=%q", env)
		assert.Contains(t, msg, "apt-get install python3-grpcio")
		assert.Contains(t, msg, err.Error())
	}
	msg, skip := pythonProblem(err, "skip")
	assert.True(t, skip)
	assert.Contains(t, msg, "apt-get install python3-grpcio")
}
