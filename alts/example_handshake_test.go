package alts_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"time"

	"github.com/readyconn/readyconn/alts"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, roots
}

// A server and a client authenticate with TLS 1.3 and then talk over ALTS
// records. Accept returns connections whose handshake is complete.
func ExampleListen() {
	cert, roots := selfSigned()

	ln, err := alts.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo
	}()

	// The server name is taken from the address, as with tls.Dial.
	c, err := alts.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	state := c.ConnectionState()
	fmt.Println(tls.VersionName(state.Version), state.NegotiatedProtocol, c.Protocol())

	c.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(buf))
	// Output:
	// TLS 1.3 readyconn-alts/1 ALTSRP_GCM_AES128_REKEY
	// hello
}

// A plain TLS client cannot talk to an alts server: the handshake fails on
// the ALPN protocol instead of exchanging unreadable data.
func ExampleServer_plainTLSPeer() {
	cert, roots := selfSigned()
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := alts.Server(server, &tls.Config{Certificates: []tls.Certificate{cert}})
		done <- err
	}()
	tc := tls.Client(client, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	fmt.Println("plain client:", tc.Handshake())
	fmt.Println("alts server:", <-done)
	tc.Close()
	// Output:
	// plain client: remote error: tls: no application protocol
	// alts server: alts: handshake failed: tls: client requested unsupported application protocols (["h2"])
}
