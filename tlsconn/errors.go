package tlsconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// Alert levels and descriptions (RFC 8446 section 6, RFC 5246 section 7.2).
const (
	alertLevelWarning = 1
	alertLevelError   = 2

	alertCloseNotify       = 0
	alertUnexpectedMessage = 10
	alertBadRecordMAC      = 20
	alertRecordOverflow    = 22
	alertIllegalParameter  = 47
	alertDecodeError       = 50
	alertProtocolVersion   = 70
	alertUserCanceled      = 90
	alertNoRenegotiation   = 100
)

// Handshake message types after the handshake.
const (
	handshakeHelloRequest     = 0
	handshakeClientHello      = 1
	handshakeServerHello      = 2
	handshakeNewSessionTicket = 4
	handshakeKeyUpdate        = 24
)

var (
	errClosed          = fmt.Errorf("tlsconn: use of closed connection: %w", net.ErrClosed)
	errShutdown        = errors.New("tls: protocol is shutdown")
	errEarlyCloseWrite = errors.New("tls: CloseWrite called before handshake complete")
)

// recordError is the reason this side refused a record, sent to the peer as
// a fatal alert. It unwraps to the alert (a tls.AlertError), and the error
// a Read returns is a *net.OpError with Op "local error" around it, as with
// crypto/tls; errors.Is(err, tls.AlertError(20)) reports a bad_record_mac.
type recordError struct {
	alert  tls.AlertError
	reason string
}

func (e *recordError) Error() string { return e.reason + " (" + e.alert.Error() + ")" }
func (e *recordError) Unwrap() error { return e.alert }

// alertErr returns the error for a record refused with alert desc.
func alertErr(desc uint8, reason string) error {
	return &net.OpError{Op: "local error", Err: &recordError{alert: tls.AlertError(desc), reason: reason}}
}

// alertOf returns the alert an error of alertErr carries.
func alertOf(err error) (uint8, bool) {
	var re *recordError
	if errors.As(err, &re) {
		return uint8(re.alert), true
	}
	return 0, false
}
