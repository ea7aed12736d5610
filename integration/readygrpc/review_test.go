package readygrpc

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// TestAbstractUnixSocket dials a "unix-abstract:" target through Dialer
// (gRPC hands a custom dialer "unix:@name").
func TestAbstractUnixSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract Unix sockets are Linux-only")
	}
	name := fmt.Sprintf("readygrpc-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	lis, err := net.Listen("unix", "@"+name)
	require.NoError(t, err)
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &testServer{})
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(Listener(lis)) }()
	defer func() { srv.Stop(); <-done }()

	cc, err := grpc.NewClient("unix-abstract:"+name, plainMode().client...)
	require.NoError(t, err)
	defer cc.Close()
	resp, err := testpb.NewTestServiceClient(cc).UnaryCall(opCtx(t), &testpb.SimpleRequest{ResponseSize: 10})
	require.NoError(t, err)
	assert.Len(t, resp.Payload.GetBody(), 10)
}

// TestSPIFFEID checks that the SPIFFE ID in AuthInfo follows the rules of
// grpc's own TLS credentials, so that identities (and authz audit
// principals) are the same over both.
func TestSPIFFEID(t *testing.T) {
	u := func(s string) *url.URL {
		v, err := url.Parse(s)
		require.NoError(t, err)
		return v
	}
	long := "spiffe://example.org/" + strings.Repeat("a", 2048)
	tests := []struct {
		name string
		uris []*url.URL
		want string // "" for none
	}{
		{"valid", []*url.URL{u("spiffe://example.org/workload")}, "spiffe://example.org/workload"},
		{"no URIs", nil, ""},
		{"not spiffe", []*url.URL{u("https://example.org/x")}, ""},
		{"two URIs", []*url.URL{u("spiffe://example.org/a"), u("https://example.org/b")}, ""},
		{"no workload path", []*url.URL{u("spiffe://example.org")}, ""},
		{"no workload path, slash", []*url.URL{u("spiffe://example.org/")}, "spiffe://example.org/"},
		{"user info", []*url.URL{u("spiffe://admin@example.org/workload")}, ""},
		{"too long", []*url.URL{u(long)}, ""},
		{"domain too long", []*url.URL{u("spiffe://" + strings.Repeat("d", 256) + "/w")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: tt.uris}}}
			got := authInfo(st).SPIFFEID
			if tt.want == "" {
				assert.Nil(t, got)
			} else if assert.NotNil(t, got) {
				assert.Equal(t, tt.want, got.String())
			}
		})
	}
}
