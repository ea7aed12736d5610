//go:build !linux

package readygrpc

import "net"

// grpcReadsWithoutPinning reports whether grpc-go's HTTP/2 transport reads c
// without holding a buffer while it waits. Off Linux it never does (its
// readyreader is Linux-only), so WrapConn gives every socket it can wait on
// a ReadOnReady method of its own.
func grpcReadsWithoutPinning(net.Conn) bool { return false }
