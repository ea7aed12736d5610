package alts

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/readyconn/readyconn/bufferpool"
	"github.com/readyconn/readyconn/internal/record"
	"github.com/readyconn/readyconn/internal/testnet"
)

func TestAES128GCMVector(t *testing.T) {
	var rc recordCipher
	require.NoError(t, rc.init(AES128GCM, unhex(t, "7fddb57453c241d03efbed3ac44e371c"), true))
	var ctr [12]byte
	copy(ctr[:], unhex(t, "ee283a3fc75575e33efd4887"))
	pt := unhex(t, "d5de42b461646c255c87bd2962d3b9a2")
	want := unhex(t, "2ccda4a5415cb91e135c2a0f78c9b2fd"+"b36d1df9b9d5e596f83e8b7f52971cb3")
	got, err := rc.sealAt(nil, &ctr, pt, nil)
	require.NoError(t, err)
	require.Equal(t, want, got)
	back, err := rc.openAt(nil, &ctr, got, nil)
	require.NoError(t, err)
	require.Equal(t, pt, back)
	got[3] ^= 1
	_, err = rc.openAt(nil, &ctr, got, nil)
	require.ErrorIs(t, err, ErrAuth)
}

func TestRekeyAEADVectors(t *testing.T) {
	tests := []struct{ name, key, nonce, aad, pt, ct string }{
		{"empty", "0000000000000000000000000000000001010101010101010101010101010101020202020202020202020202",
			"000000000000000000000000", "", "", "85e873e002f6ebdc4060954eb8675508"},
		{"zeros", "0000000000000000000000000000000001010101010101010101010101010101020202020202020202020202",
			"000000000000000000000000", "", "00000000000000000000000000000000",
			"51e9a8cb23ca2512c8256afff8e72d681aca19a1148ac115e83df4888cc00d11"},
		{"nist", "feffe9928665731c6d6a8f9467308308fffee8938764721d6c6b8e9566318209fcfdeb908467711e6f688d96",
			"cafebabefacedbaddecaf888", "",
			"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
			"1018ed5a1402a86516d6576d70b2ffccca261b94df88b58f53b64dfba435d18b2f6e3b7869f9353d4ac8cf09afb1663daa7b4017e6fc2c177c0c087c0df1162129952213cee1bc6e9c8495dd705e1f3d"},
		{"kdf-boundary-aad", "feffe9928665731c6d6a8f9467308308fffee8938764721d6c6b8e9566318209fcfdeb908467711e6f688d96",
			"cafebbbefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
			"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
			"c0121e6c954d0767f96630c33450999791b2da2ad05c4190169ccad9ac86ff1c721e3d82f2ad22ab463bab4a0754b7dd68ca4de7ea2531b625eda01f89312b2ab957d5c7f8568dd95fcdcd1f"},
	}
	// One cipher runs all vectors in order so that the key derivation is
	// exercised across changes of counter bytes 2..7 (and of the key: the
	// cipher is re-initialised per distinct key).
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seal, open recordCipher
			require.NoError(t, seal.init(AES128GCMRekey, unhex(t, tt.key), false))
			require.NoError(t, open.init(AES128GCMRekey, unhex(t, tt.key), false))
			var ctr [12]byte
			copy(ctr[:], unhex(t, tt.nonce))
			pt, aad, want := unhex(t, tt.pt), unhex(t, tt.aad), unhex(t, tt.ct)
			got, err := seal.sealAt(nil, &ctr, pt, aad)
			require.NoError(t, err)
			require.Equal(t, want, got)
			back, err := open.openAt(nil, &ctr, got, aad)
			require.NoError(t, err)
			require.Equal(t, len(pt), len(back))
			require.True(t, bytes.Equal(pt, back))
			// Same cipher, other KDF counter: must re-derive and fail.
			other := ctr
			other[2] ^= 1
			_, err = open.openAt(nil, &other, got, aad)
			require.ErrorIs(t, err, ErrAuth)
			// And back to the right one.
			_, err = open.openAt(nil, &ctr, got, aad)
			require.NoError(t, err)
		})
	}
}

var grpcFrames = []struct {
	name     string
	protocol string
	side     Side
	msgs     []string
	frames   string
}{
	{"aes128gcm-client", AES128GCM, ClientSide, []string{"This is plaintext."},
		"26000000060000008077d4d480ab60c25e00f28405a4813191f49f60881583296ac23c87b727c98f9743"},
	{"aes128gcm-server", AES128GCM, ServerSide, []string{"This is plaintext."},
		"26000000060000003bf07472e02cd6298bcf99fc977ed2a121643efcd3fdc8764b7ec9a1d6b28b75890d"},
	{"aes128gcm-client-a-b", AES128GCM, ClientSide, []string{"a", "b"},
		"1500000006000000b5f08f7a89bec1846ef18132ab322a0323" + "1500000006000000d5ed545cf81cacf14bed2f67dccdae42a2"},
	{"rekey-client", AES128GCMRekey, ClientSide, []string{"This is plaintext."},
		"26000000060000000bf4b432b7f6ea6bd5b98a92f2727c7fa9c2a4183a2aca7905211611babcd93a80d7"},
	{"rekey-server", AES128GCMRekey, ServerSide, []string{"This is plaintext."},
		"2600000006000000e2ac7da39d8dc9c88a2200eab26b62def13f6041a5f15d8701244a1daf12e4af36c0"},
}

func other(s Side) Side { return 1 - s }

func TestGRPCFrames(t *testing.T) {
	for _, tt := range grpcFrames {
		t.Run(tt.name, func(t *testing.T) {
			var msgs [][]byte
			var all []byte
			for _, m := range tt.msgs {
				msgs = append(msgs, []byte(m))
				all = append(all, m...)
			}
			want := unhex(t, tt.frames)
			require.Equal(t, want, sealFrames(t, tt.protocol, tt.side, msgs...))

			// The peer reads them back, whole and one byte at a time.
			for _, r := range []io.Reader{bytes.NewReader(want), iotest.OneByteReader(bytes.NewReader(want))} {
				c, pool := newReaderConn(t, tt.protocol, other(tt.side), r)
				got, err := readAll(c, 64)
				require.ErrorIs(t, err, io.EOF)
				require.Equal(t, all, got)
				require.Zero(t, pool.Stats().InUseBytes)
			}
			// The same side does not accept its own frames (reflection).
			c, _ := newReaderConn(t, tt.protocol, tt.side, bytes.NewReader(want))
			got, err := readAll(c, 64)
			require.ErrorIs(t, err, ErrAuth)
			require.Empty(t, got)
		})
	}
}

// TestMatchesReference checks the bytes of many frames, of every size class
// and across write chunks, against the independent reference sealer.
func TestMatchesReference(t *testing.T) {
	for _, protocol := range protocols {
		for _, side := range []Side{ClientSide, ServerSide} {
			t.Run(protocol+"/"+side.String(), func(t *testing.T) {
				ref := refCipher{protocol, keyFor(protocol)}
				msg := make([]byte, 700_000)
				for i := range msg {
					msg[i] = byte(i * 7)
				}
				got := sealFrames(t, protocol, side, msg[:1], msg[:0], msg)
				var want []byte
				want = append(want, ref.frame(t, side, 0, msg[:1])...)
				n := uint64(1)
				for p := msg; len(p) > 0; n++ {
					m := min(len(p), DefaultFrameSize-frameOverhead)
					want = append(want, ref.frame(t, side, n, p[:m])...)
					p = p[m:]
				}
				require.True(t, bytes.Equal(want, got), "frames differ from the reference")
			})
		}
	}
}

func TestNewConnErrors(t *testing.T) {
	tests := []struct {
		name     string
		protocol string
		key      []byte
		opts     []Option
		target   error
	}{
		{"unknown protocol", "ALTSRP_GCM_AES256", testKey128, nil, ErrUnknownProtocol},
		{"short aes128 key", AES128GCM, testKey128[:15], nil, ErrKeySize},
		{"rekey key for aes128", AES128GCM, testKeyRekey, nil, ErrKeySize},
		{"aes128 key for rekey", AES128GCMRekey, testKey128, nil, ErrKeySize},
		{"frame too small", AES128GCM, testKey128, []Option{WithMaxFrameSize(MinFrameSize - 1)}, nil},
		{"frame too large", AES128GCM, testKey128, []Option{WithMaxFrameSize(MaxFrameSize + 1)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewConn(&bufConn{}, ClientSide, tt.protocol, tt.key, tt.opts...)
			require.Error(t, err)
			require.Nil(t, c)
			if tt.target != nil {
				require.ErrorIs(t, err, tt.target)
			}
		})
	}
	_, err := NewConn(&bufConn{}, Side(2), AES128GCM, testKey128)
	require.Error(t, err)
}

func TestPingPong(t *testing.T) {
	for _, protocol := range protocols {
		for _, tcp := range []bool{false, true} {
			name := protocol + "/pipe"
			if tcp {
				name = protocol + "/tcp"
			}
			t.Run(name, func(t *testing.T) {
				pool := bufferpool.NewTiered(bufferpool.WithDebug())
				cl, sv := connPair(t, protocol, tcp, pool)
				done := make(chan error, 1)
				go func() {
					buf := make([]byte, 100)
					for {
						n, err := io.ReadFull(sv, buf[:1])
						if err != nil {
							done <- err
							return
						}
						l := int(buf[0])
						if _, err = io.ReadFull(sv, buf[n:1+l]); err != nil {
							done <- err
							return
						}
						for i := 1; i <= l; i++ {
							buf[i]++
						}
						if _, err := sv.Write(buf[:1+l]); err != nil {
							done <- err
							return
						}
					}
				}()
				buf := make([]byte, 100)
				for i := range 200 {
					l := i % 60
					msg := []byte{byte(l)}
					for j := range l {
						msg = append(msg, byte(i+j))
					}
					_, err := cl.Write(msg)
					require.NoError(t, err)
					_, err = io.ReadFull(cl, buf[:1+l])
					require.NoError(t, err)
					for j := range l {
						require.Equal(t, byte(i+j+1), buf[1+j])
					}
				}
				require.NoError(t, cl.Close())
				err := <-done
				require.Error(t, err)
				sv.Close()
				require.Zero(t, pool.Stats().InUseBytes)
			})
		}
	}
}

// TestMessageSizes sends messages from 1 B to 4 MiB each way over loopback
// TCP and reads them back with slices of assorted sizes, smaller and larger
// than a frame.
func TestMessageSizes(t *testing.T) {
	sizes := []int{1, 2, 23, 24, 100, 4095, 4096, 16359, 16360, 16361, 32720, 65536, 100_000, 1 << 20, 4 << 20}
	for _, protocol := range protocols {
		for _, frame := range []int{MinFrameSize, DefaultFrameSize, MaxFrameSize} {
			t.Run(protocol+"/frame="+itoa(frame), func(t *testing.T) {
				pool := bufferpool.NewTiered()
				cl, sv := connPair(t, protocol, true, pool, WithMaxFrameSize(frame))
				rng := rand.New(rand.NewPCG(1, uint64(frame)))
				for _, dir := range []struct{ w, r *Conn }{{cl, sv}, {sv, cl}} {
					for _, size := range sizes {
						msg := make([]byte, size)
						for i := range msg {
							msg[i] = byte(rng.Uint32())
						}
						errc := make(chan error, 1)
						go func() {
							_, err := dir.w.Write(msg)
							errc <- err
						}()
						got := make([]byte, 0, size)
						buf := make([]byte, 1<<20)
						for len(got) < size {
							chunk := []int{1, 7, 100, 4096, 16360, 70000, 1 << 20}[rng.IntN(7)]
							n, err := dir.r.Read(buf[:min(chunk, size-len(got))])
							require.NoError(t, err)
							got = append(got, buf[:n]...)
						}
						require.NoError(t, <-errc)
						require.True(t, bytes.Equal(msg, got), "size %d", size)
					}
				}
				cl.Close()
				sv.Close()
				require.Zero(t, pool.Stats().InUseBytes)
			})
		}
	}
}

func itoa(n int) string { return fmtInt(n) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestReadPatterns feeds the same frames split in many ways: one byte at a
// time, all at once, in odd-sized pieces; read with small and large slices
// and through ReadOnReady.
func TestReadPatterns(t *testing.T) {
	for _, protocol := range protocols {
		var msgs [][]byte
		var all []byte
		for i := range 40 {
			m := bytes.Repeat([]byte{byte(i)}, (i*i*37)%20000)
			msgs = append(msgs, m)
			all = append(all, m...)
		}
		data := sealFrames(t, protocol, ClientSide, msgs...)
		// One byte at a time only through the first 12 messages.
		onebyteLen := len(sealFrames(t, protocol, ClientSide, msgs[:12]...))
		var onebyteAll []byte
		for _, m := range msgs[:12] {
			onebyteAll = append(onebyteAll, m...)
		}
		splits := map[string]func() io.Reader{
			"whole":   func() io.Reader { return &chunkReader{data: data, sizes: []int{len(data)}} },
			"onebyte": func() io.Reader { return &chunkReader{data: data[:onebyteLen], sizes: []int{1}} },
			"odd":     func() io.Reader { return &chunkReader{data: data, sizes: []int{3, 8, 1000, 5, 17000, 70000, 9}} },
			"header":  func() io.Reader { return &chunkReader{data: data, sizes: []int{4, 4, 100000}} },
		}
		for sname, mk := range splits {
			for _, chunk := range []int{1, 13, 4096, 1 << 20} {
				t.Run(protocol+"/"+sname+"/read="+fmtInt(chunk), func(t *testing.T) {
					if sname == "onebyte" && chunk < 1<<20 {
						t.Skip("covered by larger reads; slow")
					}
					c, pool := newReaderConn(t, protocol, ServerSide, mk())
					got, err := readAll(c, chunk)
					require.ErrorIs(t, err, io.EOF)
					want := all
					if sname == "onebyte" {
						want = onebyteAll
					}
					require.True(t, bytes.Equal(want, got))
					require.Zero(t, pool.Stats().InUseBytes)
				})
			}
		}
		t.Run(protocol+"/ReadOnReady", func(t *testing.T) {
			c, pool := newReaderConn(t, protocol, ServerSide, &chunkReader{data: data, sizes: []int{5000, 30000}})
			out := bufferpool.NewTiered(bufferpool.WithDebug())
			var got []byte
			for _, size := range []int{1, 100, 50000} {
				_ = size
			}
			i := 0
			for {
				size := []int{1, 100, 50000, 16360}[i%4]
				i++
				buf, n, err := c.ReadOnReady(size, out)
				if n > 0 {
					require.LessOrEqual(t, n, size)
					got = append(got, (*buf)[:n]...)
					out.Put(buf)
				} else {
					require.Nil(t, buf)
				}
				if err != nil {
					require.ErrorIs(t, err, io.EOF)
					break
				}
			}
			require.True(t, bytes.Equal(all, got))
			require.Zero(t, pool.Stats().InUseBytes)
			require.Zero(t, out.Stats().InUseBytes)
			_, _, err := c.ReadOnReady(0, out)
			require.Error(t, err)
		})
	}
}

func TestLeftover(t *testing.T) {
	for _, protocol := range protocols {
		data := sealFrames(t, protocol, ServerSide, []byte("hello "), []byte("leftover "), []byte("world"))
		for cut := 0; cut <= len(data); cut++ {
			c, pool := newReaderConn(t, protocol, ClientSide, bytes.NewReader(data[cut:]), WithLeftover(data[:cut]))
			got, err := readAll(c, 4)
			require.ErrorIs(t, err, io.EOF)
			require.Equal(t, "hello leftover world", string(got))
			require.Zero(t, pool.Stats().InUseBytes)
		}
	}
}

// TestRekeyBoundary crosses the 2^16-frame key change in both directions,
// comparing the bytes with the reference implementation.
func TestRekeyBoundary(t *testing.T) {
	const start = 1<<16 - 3
	ref := refCipher{AES128GCMRekey, testKeyRekey}
	for _, sender := range []Side{ClientSide, ServerSide} {
		t.Run("from-"+sender.String(), func(t *testing.T) {
			bc := &bufConn{}
			w, err := newConnUnguarded(bc, sender, AES128GCMRekey, testKeyRekey)
			require.NoError(t, err)
			w.setCounters(refCounter(sender, start), refCounter(other(sender), 0))
			var want, all []byte
			for i := range 6 {
				m := []byte{byte(i), 'x', byte(i)}
				_, err := w.Write(m)
				require.NoError(t, err)
				want = append(want, ref.frame(t, sender, start+uint64(i), m)...)
				all = append(all, m...)
			}
			// Across 2^16 twice more: byte 2 and a carry into byte 3.
			for _, n := range []uint64{1<<24 - 1, 1 << 24} {
				w.setCounters(refCounter(sender, n), refCounter(other(sender), 0))
				m := []byte("carry")
				_, err := w.Write(m)
				require.NoError(t, err)
				want = append(want, ref.frame(t, sender, n, m)...)
			}
			require.True(t, bytes.Equal(want, bc.written()))

			data := bc.written()
			r, _ := newReaderConn(t, AES128GCMRekey, other(sender), bytes.NewReader(data))
			r.setCounters(refCounter(other(sender), 0), refCounter(sender, start))
			got := make([]byte, len(all))
			_, err = io.ReadFull(r, got)
			require.NoError(t, err)
			require.Equal(t, all, got)
			// The next frame has a counter jump, so it must not authenticate.
			_, err = r.Read(got)
			require.ErrorIs(t, err, ErrAuth)
		})
	}
}

// TestRekeyRealBoundary writes 65536+ frames from counter 0 to exercise the
// natural key change over a loopback connection.
func TestRekeyRealBoundary(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2^16 frames")
	}
	pool := bufferpool.NewTiered()
	cl, sv := connPair(t, AES128GCMRekey, true, pool)
	const frames = 1<<16 + 10
	for _, dir := range []struct{ w, r *Conn }{{cl, sv}, {sv, cl}} {
		errc := make(chan error, 1)
		go func() {
			msg := []byte{0}
			for i := range frames {
				msg[0] = byte(i)
				if _, err := dir.w.Write(msg); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		buf := make([]byte, 1)
		for i := range frames {
			_, err := io.ReadFull(dir.r, buf)
			require.NoError(t, err)
			require.Equal(t, byte(i), buf[0])
		}
		require.NoError(t, <-errc)
	}
}

func TestCounterOverflow(t *testing.T) {
	for _, tt := range []struct {
		protocol string
		last     uint64
	}{{AES128GCM, 1<<40 - 1}, {AES128GCMRekey, 1<<64 - 1}} {
		t.Run(tt.protocol, func(t *testing.T) {
			bc := &bufConn{}
			w, err := newConnUnguarded(bc, ClientSide, tt.protocol, keyFor(tt.protocol), WithMaxFrameSize(MinFrameSize))
			require.NoError(t, err)
			// Two frames left; a three-frame write writes two and fails.
			w.setCounters(refCounter(ClientSide, tt.last-1), refCounter(ServerSide, 0))
			payload := MinFrameSize - frameOverhead
			n, err := w.Write(make([]byte, 3*payload))
			require.ErrorIs(t, err, ErrCounterOverflow)
			require.Equal(t, 2*payload, n)
			_, err = w.Write([]byte("x"))
			require.ErrorIs(t, err, ErrCounterOverflow)
			data := bc.written()
			require.Len(t, data, 2*MinFrameSize)

			// The reader takes both frames, then refuses anything more
			// (even a frame that would decrypt under a wrapped counter).
			data = append(data, data[:MinFrameSize]...)
			r, pool := newReaderConn(t, tt.protocol, ServerSide, bytes.NewReader(data))
			r.setCounters(refCounter(ServerSide, 0), refCounter(ClientSide, tt.last-1))
			got, err := readAll(r, 1<<16)
			require.ErrorIs(t, err, ErrCounterOverflow)
			require.Len(t, got, 2*payload)
			_, err = r.Read(got)
			require.ErrorIs(t, err, ErrCounterOverflow)
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
	// For AES128GCM, only 5 bytes count: 2^40-1 is followed by exhaustion,
	// not by 2^40.
	var c counter = newCounter(aes128GCMCounterMask, true)
	c.lo = 1<<40 - 1
	c.inc()
	require.True(t, c.exhausted)
	require.Equal(t, [12]byte{11: 0x80}, c.value())
}

func header(length, typ uint32) []byte {
	h := make([]byte, 8)
	binary.LittleEndian.PutUint32(h, length)
	binary.LittleEndian.PutUint32(h[4:], typ)
	return h
}

func TestBadInput(t *testing.T) {
	ref := refCipher{AES128GCM, testKey128}
	f0 := ref.frame(t, ClientSide, 0, []byte("frame zero"))
	f1 := ref.frame(t, ClientSide, 1, []byte("frame one"))
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	type tc struct {
		name   string
		data   []byte
		prefix string // plaintext expected before the error
		target error
	}
	tests := []tc{
		{"zero length", header(0, 6), "", ErrMalformed},
		{"length over limit", header(MaxFrameSize+1, 6), "", ErrMalformed},
		{"length max uint32", header(0xffffffff, 6), "", ErrMalformed},
		{"length over limit after a frame", cat(f0, header(MaxFrameSize+1, 6)), "frame zero", ErrMalformed},
		{"wrong type", cat(f0[:4], []byte{7, 0, 0, 0}, f0[8:]), "", ErrMalformed},
		{"type zero", cat(f0[:4], []byte{0, 6, 0, 0}, f0[8:]), "", ErrMalformed},
		{"flipped ciphertext", flip(f0, 9), "", ErrAuth},
		{"flipped tag", flip(f0, len(f0)-1), "", ErrAuth},
		{"flipped length then frame", cat(flip(f0, 0), f1, f1), "", ErrAuth},
		{"flipped second frame", cat(f0, flip(f1, 12)), "frame zero", ErrAuth},
		{"replayed", cat(f0, f0), "frame zero", ErrAuth},
		{"reordered", cat(f1, f0), "", ErrAuth},
		{"server frame", ref.frame(t, ServerSide, 0, []byte("x")), "", ErrAuth},
		{"truncated header", f0[:5], "", io.ErrUnexpectedEOF},
		{"truncated length", f0[:2], "", io.ErrUnexpectedEOF},
		{"truncated body", f0[:len(f0)-1], "", io.ErrUnexpectedEOF},
		{"truncated second", cat(f0, f1[:20]), "frame zero", io.ErrUnexpectedEOF},
		{"clean eof", cat(f0, f1), "frame zeroframe one", io.EOF},
	}
	for l := uint32(1); l < 20; l++ {
		tests = append(tests, tc{"length " + fmtInt(int(l)), cat(header(l, 6), make([]byte, 32)), "", ErrMalformed})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{1, 1 << 20} {
				counting := &countingPool{Pool: bufferpool.NewTiered(bufferpool.WithDebug())}
				c, err := newConnUnguarded(&bufConn{r: &chunkReader{data: tt.data, sizes: []int{chunk}}}, ServerSide, AES128GCM, testKey128, WithPool(counting))
				require.NoError(t, err)
				got, err := readAll(c, 1000)
				require.ErrorIs(t, err, tt.target)
				require.Equal(t, tt.prefix, string(got))
				if tt.target != io.EOF {
					// Sticky.
					_, err2 := c.Read(make([]byte, 10))
					require.ErrorIs(t, err2, tt.target)
				}
				require.Zero(t, counting.Pool.(*bufferpool.Tiered).Stats().InUseBytes)
				require.LessOrEqual(t, counting.max, record.WakeReadSize, "no buffer sized by the bad header")
			}
		})
	}
	// The type check looks at the low byte only, as grpc-go does.
	c, _ := newReaderConn(t, AES128GCM, ServerSide, bytes.NewReader(cat(f0[:4], []byte{6, 1, 0, 0}, f0[8:])))
	got, err := readAll(c, 100)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, "frame zero", string(got))
}

// TestPartialFramePinsWhatArrived announces a 1 MiB frame and sends it in
// pieces: the Conn must hold nothing while idle, hold about what arrived
// while the frame is partial (never the announced size up front), and
// nothing once it has been read.
func TestPartialFramePinsWhatArrived(t *testing.T) {
	ref := refCipher{AES128GCM, testKey128}
	big := ref.frame(t, ClientSide, 0, make([]byte, MaxFrameSize-20))
	cc := newChanConn()
	tiered := bufferpool.NewTiered()
	c, err := newConnUnguarded(cc, ServerSide, AES128GCM, testKey128, WithPool(tiered))
	require.NoError(t, err)
	got := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(c, make([]byte, MaxFrameSize-20))
		got <- err
	}()
	cc.waitIdle(t)
	require.Zero(t, tiered.Stats().InUseBytes, "idle")
	arrived := 0
	for _, piece := range []int{100, 900, 3000, 10_000, 50_000, 200_000, 1 << 20} {
		piece = min(piece, len(big)-arrived)
		cc.ch <- big[arrived : arrived+piece]
		arrived += piece
		if arrived == len(big) {
			break
		}
		// Wait until the reader has taken the piece in and waits again.
		cc.waitIdle(t)
		held := tiered.Stats().InUseBytes
		require.LessOrEqual(t, held, int64(max(2*arrived+arrived/2, 2*minHold)), "arrived %d", arrived)
		require.GreaterOrEqual(t, held, int64(arrived))
	}
	require.NoError(t, <-got)
	require.Zero(t, tiered.Stats().InUseBytes)
	close(cc.ch)
}

// TestIdleHoldsNothing parks a Read on a Conn whose connection only takes a
// buffer once bytes arrive (as on Unix sockets) and checks that nothing is
// held while it waits, between messages, and after a partial frame.
func TestIdleHoldsNothing(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			data := sealFrames(t, protocol, ClientSide, []byte("one"), make([]byte, 40000), []byte("three"))
			cc := newChanConn()
			pool := bufferpool.NewTiered(bufferpool.WithDebug())
			c, err := newConnUnguarded(cc, ServerSide, protocol, keyFor(protocol), WithPool(pool))
			require.NoError(t, err)
			out := make(chan []byte)
			go func() {
				buf := make([]byte, 50000)
				for {
					n, err := c.Read(buf)
					if err != nil {
						close(out)
						return
					}
					out <- bytes.Clone(buf[:n])
				}
			}()
			idle := func() {
				cc.waitIdle(t)
				require.Zero(t, pool.Stats().InUseBytes)
			}
			idle()
			cc.ch <- data[:27]
			require.Equal(t, "one", string(<-out))
			idle()
			cc.ch <- data[27:1000]
			cc.waitIdle(t)
			require.LessOrEqual(t, pool.Stats().InUseBytes, int64(2*minHold))
			cc.ch <- data[1000 : len(data)-10]
			total := 0
			for total < 40000 {
				total += len(<-out)
			}
			require.Equal(t, 40000, total)
			cc.waitIdle(t)
			require.LessOrEqual(t, pool.Stats().InUseBytes, int64(minHold), "only the partial last frame")
			cc.ch <- data[len(data)-10:]
			require.Equal(t, "three", string(<-out))
			idle()
			close(cc.ch)
			_, ok := <-out
			require.False(t, ok)
		})
	}
}

type countingPool struct {
	bufferpool.Pool
	max int
}

func (p *countingPool) Get(n int) *[]byte {
	p.max = max(p.max, n)
	return p.Pool.Get(n)
}

func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops Puts at random under -race, so allocation counts are not exact")
	}
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			pool := bufferpool.NewTiered()
			// Prepare 4 rounds of frames to replay.
			msg := make([]byte, 20000)
			w := &bufConn{}
			wc, err := newConnUnguarded(w, ClientSide, protocol, keyFor(protocol), WithPool(pool))
			require.NoError(t, err)
			_, err = wc.Write(msg)
			require.NoError(t, err)
			require.Zero(t, pool.Stats().InUseBytes)
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := wc.Write(msg); err != nil {
					t.Fatal(err)
				}
			})
			require.Zero(t, allocs, "Write")

			data := w.written()
			src := &loopReader{}
			rc, err := newConnUnguarded(&bufConn{r: src}, ServerSide, protocol, keyFor(protocol), WithPool(pool))
			require.NoError(t, err)
			buf := make([]byte, len(msg))
			small := make([]byte, 1000)
			// Frames one by one: the Conn sees each Write's frames.
			per := len(data) / 102
			src.data = data[:per]
			_, err = io.ReadFull(rc, buf)
			require.NoError(t, err)
			k := 1
			allocs = testing.AllocsPerRun(50, func() {
				src.data = data[k*per : (k+1)*per]
				k++
				if _, err := io.ReadFull(rc, buf[:len(msg)/2]); err != nil {
					t.Fatal(err)
				}
				for range 3 {
					if _, err := rc.Read(small); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := io.ReadFull(rc, buf[:len(msg)-len(msg)/2-3000]); err != nil {
					t.Fatal(err)
				}
			})
			require.Zero(t, allocs, "Read")
			// ReadOnReady: a whole frame into a buffer of the caller's
			// pool, and frames larger than size in pieces.
			out := bufferpool.NewTiered()
			allocs = testing.AllocsPerRun(40, func() {
				src.data = data[k*per : (k+1)*per]
				k++
				for got := 0; got < len(msg); {
					size := 32 << 10
					if got > 0 {
						size = 1000
					}
					b, n, err := rc.ReadOnReady(size, out)
					if err != nil {
						t.Fatal(err)
					}
					out.Put(b)
					got += n
				}
			})
			require.Zero(t, allocs, "ReadOnReady")
			require.Zero(t, pool.Stats().InUseBytes)
			require.Zero(t, out.Stats().InUseBytes)
		})
	}
}

type loopReader struct{ data []byte }

func (l *loopReader) Read(p []byte) (int, error) {
	if len(l.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, l.data)
	l.data = l.data[n:]
	return n, nil
}

func TestTCPDeadlineAndClose(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			pool := bufferpool.NewTiered(bufferpool.WithDebug())
			cl, sv := connPair(t, protocol, true, pool)

			// Read deadline: times out, loses nothing, works again after.
			require.NoError(t, sv.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
			_, err := sv.Read(make([]byte, 10))
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			var ne net.Error
			require.True(t, errors.As(err, &ne) && ne.Timeout())
			require.NoError(t, sv.SetReadDeadline(time.Time{}))

			// A deadline that fires while part of a frame is buffered.
			frames := sealFrames(t, protocol, ClientSide, []byte("partial frame"))
			raw := cl.NetConn()
			_, err = raw.Write(frames[:10])
			require.NoError(t, err)
			require.NoError(t, sv.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
			_, err = sv.Read(make([]byte, 10))
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			require.NoError(t, sv.SetReadDeadline(time.Time{}))
			_, err = raw.Write(frames[10:])
			require.NoError(t, err)
			got := make([]byte, 13)
			_, err = io.ReadFull(sv, got)
			require.NoError(t, err)
			require.Equal(t, "partial frame", string(got))

			// Close while a Read is parked; idle means no buffer.
			errc := make(chan error, 1)
			go func() {
				_, err := sv.Read(make([]byte, 10))
				errc <- err
			}()
			testnet.WaitParked(t, "alts.(*Conn).Read")
			if rawPathExpected {
				require.False(t, pinsWhileWaiting(t, cl.NetConn()), "readyreader must not pin on a TCP socket on Unix")
				require.Zero(t, pool.Stats().InUseBytes, "idle Conn owns a buffer while a Read is parked")
			}
			require.NoError(t, sv.Close())
			select {
			case err := <-errc:
				require.ErrorIs(t, err, net.ErrClosed)
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not unblock Read")
			}
			_, err = sv.Read(make([]byte, 1))
			require.ErrorIs(t, err, net.ErrClosed)
			_, err = sv.Write([]byte("x"))
			require.ErrorIs(t, err, net.ErrClosed)
			require.ErrorIs(t, sv.Close(), net.ErrClosed)

			// The client sees EOF at a frame boundary.
			_, err = cl.Read(make([]byte, 1))
			require.ErrorIs(t, err, io.EOF)
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

func TestCloseWhilePartialBuffered(t *testing.T) {
	pool := bufferpool.NewTiered(bufferpool.WithDebug())
	cl, sv := connPair(t, AES128GCM, true, pool)
	frames := sealFrames(t, AES128GCM, ClientSide, make([]byte, 5000))
	_, err := cl.NetConn().Write(frames[:3000])
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() {
		_, err := sv.Read(make([]byte, 10))
		errc <- err
	}()
	require.Eventually(t, func() bool { return pool.Stats().InUseBytes > 0 }, 30*time.Second, time.Millisecond)
	testnet.WaitParked(t, "alts.(*Conn).Read")
	if rawPathExpected {
		require.False(t, pinsWhileWaiting(t, cl.NetConn()), "readyreader must not pin on a TCP socket on Unix")
		require.LessOrEqual(t, pool.Stats().InUseBytes, int64(2*minHold), "partial frame pins about what arrived")
	}
	require.NoError(t, sv.Close())
	require.ErrorIs(t, <-errc, net.ErrClosed)
	require.Zero(t, pool.Stats().InUseBytes)
}

// TestConcurrentReadWrite runs a reader and a writer on each end at once
// (under -race), for both record protocols, with Close in the middle of it:
// every byte read must be the next byte of what the other end wrote, and
// both directions must have moved at least 1 MiB before Close.
func TestConcurrentReadWrite(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			pool := bufferpool.NewTiered()
			cl, sv := connPair(t, protocol, true, pool)
			// Side s writes the byte sequence pattern(s, 0), pattern(s, 1), ...
			pattern := func(s Side, i int) byte { return byte(i*7 + i/251 + int(s)*101) }
			const enough = 1 << 20
			var wg sync.WaitGroup
			received := make(chan int, 2) // once per reader, at enough bytes
			errs := make(chan error, 2)
			for _, c := range []*Conn{cl, sv} {
				wg.Add(2)
				go func() {
					defer wg.Done()
					msg := make([]byte, 50_000)
					sizes := []int{1, 10, 1000, 16_000, 16_360, 50_000}
					for off, i := 0, 0; ; i++ {
						m := msg[:sizes[i%len(sizes)]]
						for j := range m {
							m[j] = pattern(c.Side(), off+j)
						}
						n, err := c.Write(m)
						off += n
						if err != nil {
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					buf := make([]byte, 7000)
					peer := other(c.Side())
					total, told := 0, false
					for {
						n, err := c.Read(buf)
						for j := range n {
							if buf[j] != pattern(peer, total+j) {
								errs <- fmt.Errorf("%v read a wrong byte at offset %d", c.Side(), total+j)
								return
							}
						}
						total += n
						if total >= enough && !told {
							received <- total
							told = true
						}
						if err != nil {
							if !told {
								errs <- fmt.Errorf("%v: %w after %d bytes", c.Side(), err, total)
							}
							return
						}
					}
				}()
			}
			for range 2 {
				select {
				case <-received:
				case err := <-errs:
					t.Fatal(err)
				}
			}
			cl.Close()
			sv.Close()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			require.Zero(t, pool.Stats().InUseBytes)
		})
	}
}

// TestPartialWrite checks the count a failing Write returns: the frames
// that reached the connection, the one cut midway included (its rest is
// owed to the stream), and that the rest is sent before anything else.
func TestPartialWrite(t *testing.T) {
	lw := &limitedConn{limit: 2*MinFrameSize + 100}
	pool := bufferpool.NewTiered(bufferpool.WithDebug())
	c, err := newConnUnguarded(lw, ClientSide, AES128GCM, testKey128, WithMaxFrameSize(MinFrameSize), WithPool(pool))
	require.NoError(t, err)
	n, err := c.Write(make([]byte, 5*(MinFrameSize-frameOverhead)))
	require.ErrorIs(t, err, errLimit)
	require.Equal(t, 3*(MinFrameSize-frameOverhead), n)
	require.Len(t, lw.written(), 2*MinFrameSize+100)
	// The connection still fails: nothing more is committed.
	n, err = c.Write([]byte("x"))
	require.ErrorIs(t, err, errLimit)
	require.Zero(t, n)
	require.Len(t, lw.written(), 2*MinFrameSize+100)
	// Once it works again, the cut frame is completed first.
	lw.limit = 1 << 20
	n, err = c.Write([]byte("x"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	got := refCipher{AES128GCM, testKey128}.decode(t, ClientSide, 0, lw.written())
	require.Equal(t, append(make([]byte, 3*(MinFrameSize-frameOverhead)), 'x'), got)
	require.NoError(t, c.Close())
	require.Zero(t, pool.Stats().InUseBytes)
}

type limitedConn struct {
	bufConn
	limit int
}

var errLimit = errors.New("limit reached")

func (l *limitedConn) Write(p []byte) (int, error) {
	n := min(len(p), l.limit)
	l.limit -= n
	l.bufConn.Write(p[:n])
	if n < len(p) {
		return n, errLimit
	}
	return n, nil
}

func TestAccessors(t *testing.T) {
	bc := &bufConn{}
	c, err := newConnUnguarded(bc, ServerSide, AES128GCMRekey, testKeyRekey)
	require.NoError(t, err)
	require.Same(t, net.Conn(bc), c.NetConn())
	require.Equal(t, ServerSide, c.Side())
	require.Equal(t, AES128GCMRekey, c.Protocol())
	require.Zero(t, c.ConnectionState().Version)
	require.Equal(t, "server", ServerSide.String())
	require.Equal(t, "client", ClientSide.String())
	require.Equal(t, "Side(5)", Side(5).String())
	require.NotNil(t, c.LocalAddr())
	require.NotNil(t, c.RemoteAddr())
	require.NoError(t, c.SetDeadline(time.Time{}))
	require.NoError(t, c.SetWriteDeadline(time.Time{}))
	n, err := c.Read(nil)
	require.Zero(t, n)
	require.NoError(t, err)
	n, err = c.Write(nil)
	require.Zero(t, n)
	require.NoError(t, err)
	require.Empty(t, bc.written())
}
