// Package testcert makes throwaway certificates for tests, benchmarks and
// measurement tools: a small ECDSA P-256 certificate authority with a server
// and a client certificate, and the crypto/tls configurations that use them.
//
// The keys are generated on every call to New and never leave the process;
// they are for loopback connections only.
package testcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ClientURI is the URI SAN (a SPIFFE ID) of every client certificate.
const ClientURI = "spiffe://example.org/client"

// PKI is a certificate authority with one server and one client
// certificate signed by it.
type PKI struct {
	// CA is the certificate authority's certificate.
	CA *x509.Certificate
	// Pool holds the CA certificate alone.
	Pool *x509.CertPool
	// Server is valid for server authentication as "localhost",
	// 127.0.0.1 and ::1; its common name is "server".
	Server tls.Certificate
	// Client is valid for client authentication; its common name is
	// "client" and its only URI is ClientURI.
	Client tls.Certificate

	leaf     func(serial int64, cn string, usage x509.ExtKeyUsage, server, useRSA bool) (tls.Certificate, error)
	rsaOnce  sync.Once
	rsaCert  tls.Certificate
	rsaError error
}

// ServerRSA returns a certificate like Server with an RSA 2048 key, for the
// TLS 1.2 suites that authenticate with RSA (ECDHE_RSA_*). It is made on
// the first call.
func (p *PKI) ServerRSA() (tls.Certificate, error) {
	p.rsaOnce.Do(func() {
		p.rsaCert, p.rsaError = p.leaf(4, "server", x509.ExtKeyUsageServerAuth, true, true)
	})
	return p.rsaCert, p.rsaError
}

// New generates a CA whose common name is name + " CA", and a server and a
// client certificate signed by it, valid from an hour ago for a day. Two
// calls give two unrelated CAs.
func New(name string) (*PKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		// Set, so that crypto/x509 does not derive it, with SHA-1 in a
		// module whose go directive predates Go 1.25 (x509sha256skid),
		// which GODEBUG=fips140=only refuses.
		SubjectKeyId: subjectKeyID(&caKey.PublicKey),
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	clientURI, err := url.Parse(ClientURI)
	if err != nil {
		return nil, err
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, server, useRSA bool) (tls.Certificate, error) {
		var key crypto.Signer
		var err error
		if useRSA {
			key, err = rsa.GenerateKey(rand.Reader, 2048)
		} else {
			key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		if err != nil {
			return tls.Certificate{}, err
		}
		keyUsage := x509.KeyUsageDigitalSignature
		if useRSA {
			keyUsage |= x509.KeyUsageKeyEncipherment
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     keyUsage,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if server {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		} else {
			tmpl.URIs = []*url.URL{clientURI}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			return tls.Certificate{}, err
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return tls.Certificate{}, err
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, nil
	}
	p := &PKI{CA: ca, Pool: x509.NewCertPool()}
	p.Pool.AddCert(ca)
	if p.Server, err = leaf(2, "server", x509.ExtKeyUsageServerAuth, true, false); err != nil {
		return nil, err
	}
	if p.Client, err = leaf(3, "client", x509.ExtKeyUsageClientAuth, false, false); err != nil {
		return nil, err
	}
	p.leaf = leaf
	return p, nil
}

// ServerConfig returns a new server configuration presenting the server
// certificate. With mutual, it requires a client certificate signed by the
// CA.
func (p *PKI) ServerConfig(mutual bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{p.Server}}
	if mutual {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = p.Pool
	}
	return cfg
}

// ClientConfig returns a new client configuration trusting the CA alone.
// With cert, it presents the client certificate. ServerName is left empty:
// set it to "localhost", "127.0.0.1" or "::1" unless the caller (gRPC's
// credentials, for example) fills it in from the address.
func (p *PKI) ClientConfig(cert bool) *tls.Config {
	cfg := &tls.Config{RootCAs: p.Pool}
	if cert {
		cfg.Certificates = []tls.Certificate{p.Client}
	}
	return cfg
}

// Files are the paths of a PKI written as PEM by WritePEM.
type Files struct {
	CA                    string // the CA certificate
	ServerCert, ServerKey string // Server's chain and key
	ServerRSACert         string // ServerRSA's chain
	ServerRSAKey          string
	ClientCert, ClientKey string
}

// WritePEM writes the CA certificate and the certificates and keys of the
// PKI as PEM files (PKCS #8 keys) into dir, for peers that are not Go
// programs (openssl s_server, gRPC C-core).
func (p *PKI) WritePEM(dir string) (Files, error) {
	f := Files{
		CA:            filepath.Join(dir, "ca.pem"),
		ServerCert:    filepath.Join(dir, "server.pem"),
		ServerKey:     filepath.Join(dir, "server.key"),
		ServerRSACert: filepath.Join(dir, "server-rsa.pem"),
		ServerRSAKey:  filepath.Join(dir, "server-rsa.key"),
		ClientCert:    filepath.Join(dir, "client.pem"),
		ClientKey:     filepath.Join(dir, "client.key"),
	}
	if err := writePEM(f.CA, "CERTIFICATE", p.CA.Raw); err != nil {
		return Files{}, err
	}
	rsaCert, err := p.ServerRSA()
	if err != nil {
		return Files{}, err
	}
	for _, c := range []struct {
		cert     tls.Certificate
		crt, key string
	}{{p.Server, f.ServerCert, f.ServerKey}, {rsaCert, f.ServerRSACert, f.ServerRSAKey}, {p.Client, f.ClientCert, f.ClientKey}} {
		if err := writePEM(c.crt, "CERTIFICATE", c.cert.Certificate...); err != nil {
			return Files{}, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(c.cert.PrivateKey)
		if err != nil {
			return Files{}, err
		}
		if err := writePEM(c.key, "PRIVATE KEY", der); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

func writePEM(path, typ string, ders ...[]byte) error {
	var b []byte
	for _, der := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})...)
	}
	return os.WriteFile(path, b, 0o600)
}

// subjectKeyID is the leftmost 160 bits of the SHA-256 hash of the encoded
// public key: a key identifier in the spirit of RFC 7093, section 2.
func subjectKeyID(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(der)
	return sum[:20]
}
