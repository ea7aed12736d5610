package record

import (
	"errors"
	"io"
	"net"
	"sync"

	"github.com/readyconn/readyconn/bufferpool"
)

// TLS record framing, as read by HandshakeConn.
const (
	// TLSHeaderLen is the length of a TLS record header: content type,
	// legacy version, length.
	TLSHeaderLen = 5
	// MaxTLSRecordLen is the largest TLS record body any version allows
	// (TLS 1.2: 2^14 + 2048; TLS 1.3 allows 2^14 + 256). crypto/tls refuses
	// larger ones too, before reading them.
	MaxTLSRecordLen = 16384 + 2048
	// maxCapture bounds the bytes a HandshakeConn keeps copies of.
	maxCapture = 1 << 20
)

// TLS record content types.
const (
	TypeChangeCipherSpec = 20
	TypeAlert            = 21
	TypeHandshake        = 22
	TypeApplicationData  = 23
)

var errRecordTooLarge = errors.New("record: TLS record longer than 2^14+2048 bytes")

// ErrFeedDrained is what a HandshakeConn in feed mode returns once it has
// handed out every byte it was fed. It is a temporary net.Error, so that a
// tls.Conn reading it keeps working and may be fed again.
var ErrFeedDrained error = feedDrained{}

type feedDrained struct{}

func (feedDrained) Error() string   { return "record: fed records drained" }
func (feedDrained) Timeout() bool   { return true }
func (feedDrained) Temporary() bool { return true }

// HandshakeConn is a connection as crypto/tls sees it while it runs a
// handshake for a layer that takes the connection over afterwards.
//
// Its Read never returns a byte beyond the end of the TLS record being read,
// so when the handshake ends no byte after the peer's last handshake record
// has been taken from the connection: crypto/tls would otherwise read ahead
// into its own buffer whatever the peer sent next. With capture on, it keeps
// a copy of every record read and written, so that the layer taking over can
// find out which records crypto/tls sent and received under which keys.
//
// After the handshake it can pass everything through (when crypto/tls keeps
// carrying the data) or serve crypto/tls records it is fed (to let a retired
// tls.Conn process a post-handshake message).
type HandshakeConn struct {
	net.Conn

	hdr       [TLSHeaderLen]byte
	hdrOff    int   // bytes of hdr read from the connection (0 between records)
	hdrOut    int   // bytes of hdr already returned
	remaining int   // body bytes of the current record still on the connection
	err       error // sticky, after an oversized record header

	capture  bool
	captured int
	overflow bool
	in, out  recordLog

	passthrough bool

	feedMu sync.Mutex
	feed   []byte
	feedOn bool
}

// NewHandshakeConn returns a HandshakeConn over c; capture says whether it
// keeps copies of the records.
func NewHandshakeConn(c net.Conn, capture bool) *HandshakeConn {
	return &HandshakeConn{Conn: c, capture: capture}
}

// ReadRecords returns copies of the records read, in order, header included.
// They are complete only if Overflow is false.
func (h *HandshakeConn) ReadRecords() [][]byte { return h.in.all() }

// WrittenRecords returns copies of the records written, in order.
func (h *HandshakeConn) WrittenRecords() [][]byte { return h.out.all() }

// Overflow reports whether more than 1 MiB went through a capturing
// HandshakeConn, so that not every record was kept.
func (h *HandshakeConn) Overflow() bool { return h.overflow }

// Between reports whether the reading side is at a record boundary and
// nothing was written that does not end a record.
func (h *HandshakeConn) Between() bool {
	return h.hdrOff == 0 && h.remaining == 0 && !h.out.pending()
}

// StopCapture drops the copies and keeps no more.
func (h *HandshakeConn) StopCapture() {
	h.capture = false
	h.in.free()
	h.out.free()
}

// Passthrough makes reads and writes go straight to the connection from now
// on: crypto/tls carries the data. Call it only between records.
func (h *HandshakeConn) Passthrough() {
	h.StopCapture()
	h.passthrough = true
}

// Feed makes the following Reads return b (which must be whole records) and
// then ErrFeedDrained, instead of reading the connection.
func (h *HandshakeConn) Feed(b []byte) {
	h.feedMu.Lock()
	h.feed, h.feedOn = b, true
	h.feedMu.Unlock()
}

// EndFeed ends feed mode.
func (h *HandshakeConn) EndFeed() {
	h.feedMu.Lock()
	h.feed, h.feedOn = nil, false
	h.feedMu.Unlock()
}

func (h *HandshakeConn) readFeed(p []byte) (int, error) {
	h.feedMu.Lock()
	defer h.feedMu.Unlock()
	if len(h.feed) == 0 {
		return 0, ErrFeedDrained
	}
	n := copy(p, h.feed)
	h.feed = h.feed[n:]
	return n, nil
}

// Read reads at most up to the end of the current TLS record.
func (h *HandshakeConn) Read(p []byte) (int, error) {
	if h.feedOn {
		return h.readFeed(p)
	}
	if h.passthrough {
		return h.Conn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if h.err != nil && h.hdrOut == TLSHeaderLen {
		return 0, h.err
	}
	if h.hdrOff < TLSHeaderLen {
		n, err := io.ReadFull(h.Conn, h.hdr[h.hdrOff:])
		h.hdrOff += n
		if h.hdrOff < TLSHeaderLen {
			if err == io.EOF && h.hdrOff > 0 {
				err = io.ErrUnexpectedEOF
			}
			// Hand over what arrived so crypto/tls reports the
			// truncation or deadline itself.
			n := copy(p, h.hdr[h.hdrOut:h.hdrOff])
			h.hdrOut += n
			h.log(&h.in, h.hdr[h.hdrOut-n:h.hdrOut])
			return n, err
		}
		h.remaining = int(h.hdr[3])<<8 | int(h.hdr[4])
		if h.remaining > MaxTLSRecordLen {
			// Let crypto/tls see the header and refuse the record
			// with the right alert; never read its body.
			h.remaining = 0
			h.err = errRecordTooLarge
		}
	}
	if h.hdrOut < TLSHeaderLen {
		n := copy(p, h.hdr[h.hdrOut:])
		h.hdrOut += n
		h.log(&h.in, h.hdr[h.hdrOut-n:h.hdrOut])
		if h.hdrOut == TLSHeaderLen && h.remaining == 0 && h.err == nil {
			h.hdrOff, h.hdrOut = 0, 0
		}
		return n, nil
	}
	if len(p) > h.remaining {
		p = p[:h.remaining]
	}
	n, err := h.Conn.Read(p)
	h.log(&h.in, p[:n])
	h.remaining -= n
	if h.remaining == 0 {
		h.hdrOff, h.hdrOut = 0, 0
	}
	if err == io.EOF && h.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Write writes to the connection, keeping a copy of whole records.
func (h *HandshakeConn) Write(p []byte) (int, error) {
	n, err := h.Conn.Write(p)
	if !h.passthrough {
		h.log(&h.out, p[:n])
	}
	return n, err
}

func (h *HandshakeConn) log(l *recordLog, b []byte) {
	if !h.capture || len(b) == 0 {
		return
	}
	h.captured += len(b)
	if h.captured > maxCapture {
		h.overflow = true
		h.in.free()
		h.out.free()
		h.capture = false
		return
	}
	l.add(b)
}

// recordLog cuts a stream of bytes into TLS records. The bytes are kept in
// one buffer from the default pool, grown by doubling, so that a handshake
// leaves no garbage of its own behind (garbage interleaved with the
// connection's long-lived objects keeps heap spans in use); free returns it.
type recordLog struct {
	buf     *[]byte // from bufferpool.Default(); (*buf)[:n] holds the records
	n       int
	start   int // where the record being collected starts
	want    int // its total length, once the header is complete
	ends    []int
	records [][]byte // views of (*buf), made by all
}

func (l *recordLog) add(b []byte) {
	if l.buf == nil {
		l.buf = bufferpool.Default().Get(max(4<<10, len(b)))
	}
	if need := l.n + len(b); need > len(*l.buf) {
		nb := bufferpool.Default().Get(max(need, 2*len(*l.buf)))
		copy(*nb, (*l.buf)[:l.n])
		bufferpool.Default().Put(l.buf)
		l.buf = nb
	}
	l.n += copy((*l.buf)[l.n:], b)
	for {
		cur := (*l.buf)[l.start:l.n]
		if l.want == 0 {
			if len(cur) < TLSHeaderLen {
				return
			}
			l.want = TLSHeaderLen + (int(cur[3])<<8 | int(cur[4]))
		}
		if len(cur) < l.want {
			return
		}
		l.start += l.want
		l.ends = append(l.ends, l.start)
		l.want = 0
	}
}

// all returns the complete records, valid until free.
func (l *recordLog) all() [][]byte {
	l.records = l.records[:0]
	start := 0
	for _, end := range l.ends {
		l.records = append(l.records, (*l.buf)[start:end:end])
		start = end
	}
	return l.records
}

// pending reports whether bytes of an incomplete record are kept.
func (l *recordLog) pending() bool { return l.n > l.start }

// free returns the buffer. The bytes were records of a handshake (and, after
// it, records sealed under keys this side no longer uses); they are cleared
// anyway.
func (l *recordLog) free() {
	if l.buf != nil {
		clear((*l.buf)[:l.n])
		bufferpool.Default().Put(l.buf)
	}
	*l = recordLog{}
}
