package tlsconn

import (
	"bytes"
	"errors"

	"github.com/readyconn/readyconn/internal/record"
)

// maxHandshakeMessage bounds a post-handshake message, as crypto/tls does.
const maxHandshakeMessage = 65536

// hsMessage tracks the post-handshake handshake message being read: the
// only ones after a handshake are NewSessionTicket (to a client) and
// KeyUpdate in TLS 1.3, and, refused, HelloRequest in TLS 1.2. Messages may
// span records; their bodies are skipped as they arrive, never buffered.
type hsMessage struct {
	hdr    [4]byte
	hdrN   uint8
	typ    byte
	remain int32 // body bytes still to come (at most maxHandshakeMessage)
}

// idle reports whether no message is partly read.
func (m *hsMessage) idle() bool { return m.hdrN == 0 && m.remain == 0 }

// handshakeMessages acts on the content of a handshake record.
func (c *Conn) handshakeMessages(b []byte) error {
	m := &c.msg
	for len(b) > 0 {
		if m.remain == 0 {
			k := copy(m.hdr[m.hdrN:], b)
			m.hdrN += uint8(k)
			b = b[k:]
			if int(m.hdrN) < len(m.hdr) {
				break
			}
			m.hdrN = 0
			m.typ = m.hdr[0]
			n := int(m.hdr[1])<<16 | int(m.hdr[2])<<8 | int(m.hdr[3])
			if err := c.startMessage(m.typ, n); err != nil {
				return err
			}
			m.remain = int32(n)
			continue
		}
		if m.typ == handshakeKeyUpdate {
			return c.keyUpdateMessage(b)
		}
		k := min(int(m.remain), len(b))
		m.remain -= int32(k)
		b = b[k:]
	}
	return nil
}

// startMessage checks the header of a post-handshake message.
func (c *Conn) startMessage(typ byte, n int) error {
	if n > maxHandshakeMessage {
		return alertErr(alertUnexpectedMessage, "tlsconn: post-handshake message longer than 64 KiB")
	}
	if err := c.uselessRecord(); err != nil {
		return err
	}
	if !c.in.suite.tls13 {
		// TLS 1.2: a HelloRequest to a client asks for renegotiation,
		// which is refused, as crypto/tls does by default.
		if c.isClient && typ == handshakeHelloRequest && n == 0 {
			return alertErr(alertNoRenegotiation, "tlsconn: renegotiation refused")
		}
		return alertErr(alertUnexpectedMessage, "tlsconn: handshake message after a TLS 1.2 handshake")
	}
	switch {
	case typ == handshakeNewSessionTicket && c.isClient:
		if n == 0 {
			return alertErr(alertDecodeError, "tlsconn: empty NewSessionTicket")
		}
		return nil
	case typ == handshakeKeyUpdate:
		if n != 1 {
			return alertErr(alertDecodeError, "tlsconn: KeyUpdate of the wrong length")
		}
		return nil
	}
	return alertErr(alertUnexpectedMessage, "tlsconn: unexpected post-handshake message")
}

// keyUpdateMessage acts on the body of a KeyUpdate, b, the rest of its
// record: the message must end the record (RFC 8446 section 5.1: a key
// change must align with a record boundary).
func (c *Conn) keyUpdateMessage(b []byte) error {
	c.msg.remain = 0
	v := b[0]
	if len(b) != 1 {
		return alertErr(alertUnexpectedMessage, "tlsconn: KeyUpdate is not the last message of its record")
	}
	if v > 1 {
		return alertErr(alertIllegalParameter, "tlsconn: KeyUpdate with an invalid request_update")
	}
	if err := record.OnFreshStack((*updateIn)(c)); err != nil {
		return err
	}
	if v == 1 {
		c.keyUpdate.Store(true)
	}
	return nil
}

// ---------------------------------------------------------------- tickets

// A TLS 1.3 client with a ClientSessionCache resumes thanks to the retired
// tls.Conn: the key log does not carry the resumption secret, so the
// NewSessionTicket records that arrive before the first application data
// are handed, as they are, to the tls.Conn, which stores the tickets in the
// cache. The first record that is anything else retires the tls.Conn for
// good.

// ticketRecord handles rec while tickets are being handed to crypto/tls: it
// opens a copy of rec, and if it holds only NewSessionTickets lets the
// tls.Conn read the original, and returns true (with any error in c.res).
// Any other record retires the tls.Conn and returns false: it is then
// processed as usual. It runs on a goroutine of its own (crypto/tls's
// ticket handling is deep).
func (c *Conn) ticketRecord(rec []byte) bool {
	handled := false
	err := onFreshStack(func() error {
		if err := c.in.acquire(c.chacha); err != nil {
			return err
		}
		cp := bytes.Clone(rec)
		content, typ, ok := c.in.open(cp[c.in.payloadOffset():][:0], cp, c.in.seq)
		onlyTickets := ok && typ == typeHandshake && c.msg.idle() && allTickets(content)
		clear(cp)
		if !onlyTickets {
			return nil
		}
		handled = true
		c.hc.Feed(rec)
		_, err := c.tc.Read(make([]byte, 1))
		c.hc.EndFeed()
		if errors.Is(err, record.ErrFeedDrained) {
			return nil
		}
		if err == nil {
			err = errors.New("tlsconn: internal error: crypto/tls returned data from a ticket record")
		}
		return err
	})
	if !handled {
		c.retireTLS()
		return false
	}
	c.in.seq++
	c.rd.ReleaseIfDrained()
	if err == nil {
		err = c.uselessRecord()
	}
	if err != nil {
		c.retireTLS()
		c.res.err = c.failRead(err)
	}
	return true
}

// allTickets reports whether b is one or more whole NewSessionTicket
// messages.
func allTickets(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for len(b) > 0 {
		if len(b) < 4 || b[0] != handshakeNewSessionTicket {
			return false
		}
		n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		if len(b) < 4+n {
			return false
		}
		b = b[4+n:]
	}
	return true
}

// retireTLS drops crypto/tls's connection once it has nothing more to do.
func (c *Conn) retireTLS() {
	c.tickets = false
	if c.hc != nil {
		c.hc.StopCapture()
	}
	c.tc, c.hc = nil, nil
}
