package readygrpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/grpclog"
)

// NewTLS returns gRPC transport credentials for standard TLS that behave as
// grpc's credentials.NewTLS(config) does, on the wire and in the API, so
// switching is a change of one identifier:
//
//	creds := credentials.NewTLS(config) // before
//	creds := readygrpc.NewTLS(config)   // after
//
// The peer can be any gRPC TLS implementation (grpc-go's credentials,
// gRPC C-core, Java, ...): nothing changes on the wire. What changes is
// memory: the TLS record layer of package tlsconn carries the data and
// holds no buffer while a connection is idle, and the connection handed to
// gRPC has the ReadOnReady method grpc-go's HTTP/2 transport looks for, so
// gRPC's own read buffer is released while idle too. Either end alone
// saves its own side. Where tlsconn cannot take over from crypto/tls after
// the handshake (see tlsconn.Conn.Pinning), the connection works through
// crypto/tls as with grpc's credentials, pinning as they do.
//
// As with credentials.NewTLS: config is cloned and may be nil; "h2" is
// added to NextProtos, and a peer that negotiates no application protocol
// is refused (unless the environment variable GRPC_ENFORCE_ALPN_ENABLED is
// "false" when the program starts); MinVersion defaults to TLS 1.2 unless
// MaxVersion is set below it; CipherSuites defaults to crypto/tls's secure
// suites minus those HTTP/2 forbids; a config returned by
// GetConfigForClient gets the same defaults. On the client, the server name
// checked against the certificate is the host part of the authority (the
// dial target or grpc.WithAuthority). The AuthInfo of a connection is a
// credentials.TLSInfo with the handshake's ConnectionState, security level
// PrivacyAndIntegrity and the peer's SPIFFE ID; Info reports
// SecurityProtocol "tls".
func NewTLS(config *tls.Config) credentials.TransportCredentials {
	cfg := applyTLSDefaults(config)
	if get := cfg.GetConfigForClient; get != nil {
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := get(hello)
			if err != nil || c == nil {
				return c, err
			}
			return applyTLSDefaults(c), nil
		}
	}
	return &tlsCreds{config: cfg}
}

// NewClientTLSFromCert is NewTLS for a client that trusts the certificate
// authorities in cp (the system roots if nil), as credentials.NewClientTLSFromCert.
// serverNameOverride, if not empty, replaces the authority's host as the
// name checked against the server certificate and as the default
// :authority; it is for testing (use grpc.WithAuthority instead). For a
// client certificate (mutual TLS), use NewTLS.
func NewClientTLSFromCert(cp *x509.CertPool, serverNameOverride string) credentials.TransportCredentials {
	return NewTLS(&tls.Config{ServerName: serverNameOverride, RootCAs: cp})
}

// NewClientTLSFromFile is NewClientTLSFromCert with the certificate
// authorities read from the PEM file certFile, as
// credentials.NewClientTLSFromFile.
func NewClientTLSFromFile(certFile, serverNameOverride string) (credentials.TransportCredentials, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	cp := x509.NewCertPool()
	if !cp.AppendCertsFromPEM(b) {
		return nil, errors.New("credentials: failed to append certificates")
	}
	return NewClientTLSFromCert(cp, serverNameOverride), nil
}

// NewServerTLSFromCert is NewTLS for a server presenting cert, as
// credentials.NewServerTLSFromCert.
func NewServerTLSFromCert(cert *tls.Certificate) credentials.TransportCredentials {
	return NewTLS(&tls.Config{Certificates: []tls.Certificate{*cert}})
}

// NewServerTLSFromFile is NewServerTLSFromCert with the certificate chain
// and key read from PEM files, as credentials.NewServerTLSFromFile.
func NewServerTLSFromFile(certFile, keyFile string) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return NewServerTLSFromCert(&cert), nil
}

// h2ForbiddenSuites are the TLS 1.2 cipher suites of crypto/tls's secure
// list that HTTP/2 forbids (RFC 7540, Appendix A); grpc's credentials leave
// them out of the default list.
var h2ForbiddenSuites = []uint16{
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
}

// applyTLSDefaults returns a clone of c (an empty config if c is nil) with
// the defaults grpc's credentials.NewTLS applies.
func applyTLSDefaults(c *tls.Config) *tls.Config {
	if c == nil {
		c = &tls.Config{}
	}
	cfg := c.Clone()
	if !slices.Contains(cfg.NextProtos, "h2") {
		cfg.NextProtos = append(slices.Clip(cfg.NextProtos), "h2")
	}
	// HTTP/2 needs TLS 1.2 (RFC 7540, section 9.2), unless the user
	// asked for less.
	if cfg.MinVersion == 0 && (cfg.MaxVersion == 0 || cfg.MaxVersion >= tls.VersionTLS12) {
		cfg.MinVersion = tls.VersionTLS12
	}
	if cfg.CipherSuites == nil {
		for _, s := range tls.CipherSuites() {
			if !slices.Contains(h2ForbiddenSuites, s.ID) {
				cfg.CipherSuites = append(cfg.CipherSuites, s.ID)
			}
		}
	}
	return cfg
}

// tlsLogger logs what grpc's TLS credentials log, under their component
// name, so that one log configuration covers both.
var tlsLogger = grpclog.Component("credentials")

// enforceALPN is grpc-go's ALPN enforcement switch (its
// envconfig.EnforceALPNEnabled), read from the environment at start-up as
// grpc-go reads it.
var enforceALPN = enforceALPNFromEnv(os.Getenv("GRPC_ENFORCE_ALPN_ENABLED"))

func enforceALPNFromEnv(v string) bool { return !strings.EqualFold(v, "false") }

// errNoALPN is grpc's error, word for word, for a peer that negotiated no
// application protocol.
var errNoALPN = errors.New("credentials: cannot check peer: missing selected ALPN property. " +
	"If you upgraded from a grpc-go version earlier than 1.67, your TLS connections may have stopped working due to ALPN enforcement. " +
	"For more details, see: https://github.com/grpc/grpc-go/issues/434")

type tlsCreds struct {
	config *tls.Config
}

// ClientHandshake runs the client side of the TLS handshake on rawConn,
// with the host part of authority as the server name.
func (c *tlsCreds) ClientHandshake(ctx context.Context, authority string, rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg := c.config.Clone()
	host, _, err := net.SplitHostPort(authority)
	if err != nil {
		host = authority // no port, or unparsable: use it as it is
	}
	cfg.ServerName = host
	conn, state, err := clientHandshake(ctx, rawConn, cfg)
	if err != nil {
		return nil, nil, err
	}
	if state.NegotiatedProtocol == "" {
		if enforceALPN {
			conn.Close()
			return nil, nil, errNoALPN
		}
		tlsLogger.Warningf("Allowing TLS connection to server %q with ALPN disabled. TLS connections to servers with ALPN disabled will be disallowed in future grpc-go releases", cfg.ServerName)
	}
	return forGRPC(rawConn, conn), authInfo(state), nil
}

// ServerHandshake runs the server side of the TLS handshake on rawConn,
// bounded by the deadline gRPC set on it (grpc.ConnectionTimeout).
func (c *tlsCreds) ServerHandshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, state, err := serverHandshake(context.Background(), rawConn, c.config)
	if err != nil {
		return nil, nil, err
	}
	if state.NegotiatedProtocol == "" {
		if enforceALPN {
			conn.Close()
			return nil, nil, errNoALPN
		}
		if tlsLogger.V(2) {
			tlsLogger.Info("Allowing TLS connection from client with ALPN disabled. TLS connections with ALPN disabled will be disallowed in future grpc-go releases")
		}
	}
	return forGRPC(rawConn, conn), authInfo(state), nil
}

// Info reports SecurityProtocol "tls", SecurityVersion "1.2" and the
// configured ServerName, as grpc's TLS credentials do.
func (c *tlsCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{
		SecurityProtocol: "tls",
		//lint:ignore SA1019 grpc's TLS credentials report it; so do these.
		SecurityVersion: "1.2",
		//lint:ignore SA1019 OverrideServerName sets it and must keep working.
		ServerName: c.config.ServerName,
	}
}

// Clone returns an independent copy.
func (c *tlsCreds) Clone() credentials.TransportCredentials {
	return NewTLS(c.config)
}

// OverrideServerName sets the ServerName reported by Info, which gRPC uses
// as the default :authority and therefore as the name the server
// certificate is checked against.
//
// Deprecated: use grpc.WithAuthority, as for grpc's own credentials.
func (c *tlsCreds) OverrideServerName(name string) error {
	c.config.ServerName = name
	return nil
}
