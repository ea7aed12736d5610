package readygrpc

import "net"

// grpcReadsWithoutPinning reports whether grpc-go's HTTP/2 transport reads c
// without holding a buffer while it waits: on Linux it does so itself for
// the bare socket types (internal/transport/readyreader in grpc-go ≥ 1.81).
// Such a connection is best handed to gRPC untouched, so that gRPC also
// sees the *net.TCPConn it sets TCP_USER_TIMEOUT on.
func grpcReadsWithoutPinning(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}
