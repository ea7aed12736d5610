package readygrpc

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/internal/testcert"
)

// pemFiles are the paths of a throwaway PKI written as PEM files, for the
// constructors that read files and for gRPC implementations in other
// processes (testcert's: the server is "server" for localhost, 127.0.0.1
// and ::1, the client "client" with the URI testcert.ClientURI).
type pemFiles struct{ testcert.Files }

// writePEM generates a CA (common name name+" CA") with a server and a
// client certificate and writes them to a temporary directory that is
// removed when the test ends.
func writePEM(t testing.TB, name string) pemFiles {
	t.Helper()
	p, err := testcert.New(name)
	require.NoError(t, err)
	f, err := p.WritePEM(t.TempDir())
	require.NoError(t, err)
	return pemFiles{f}
}
