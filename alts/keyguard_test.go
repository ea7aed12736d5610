package alts

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNewConnNonceReuse is what issue 13 item 2 found: two Conns given the
// same key and side seal with the same (key, nonce) pairs, so the XOR of
// their ciphertexts is the XOR of their plaintexts (shown here without the
// guard). NewConn refuses the second: a key is for one connection only.
func TestNewConnNonceReuse(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			key := randomKey(t, protocol)
			p1 := []byte("attack at dawn, from the north!")
			p2 := []byte("retreat at six, towards the sea")
			// What reuse does, without the guard.
			a, b := &bufConn{}, &bufConn{}
			ca := mustConn(t, a, ClientSide, protocol, bytes.Clone(key))
			cb := mustConn(t, b, ClientSide, protocol, bytes.Clone(key))
			_, err := ca.Write(p1)
			require.NoError(t, err)
			_, err = cb.Write(p2)
			require.NoError(t, err)
			x := make([]byte, len(p1))
			for i := range x {
				x[i] = a.written()[headerSize+i] ^ b.written()[headerSize+i] ^ p1[i]
			}
			require.Equal(t, p2, x, "the second plaintext falls out of the two ciphertexts")

			// NewConn refuses it.
			k1 := bytes.Clone(key)
			c1, err := NewConn(&bufConn{}, ClientSide, protocol, k1)
			require.NoError(t, err)
			require.NotNil(t, c1)
			require.True(t, allZero(k1), "NewConn clears the key it takes")
			c2, err := NewConn(&bufConn{}, ClientSide, protocol, bytes.Clone(key))
			require.ErrorIs(t, err, ErrKeyReuse, "the same key for the same side again")
			require.Nil(t, c2)
			_, err = NewConn(&bufConn{}, ClientSide, protocol, k1)
			require.ErrorIs(t, err, ErrKeyReuse, "the same slice again (now all zero)")
			// The other end of the same connection uses it once.
			k2 := bytes.Clone(key)
			_, err = NewConn(&bufConn{}, ServerSide, protocol, k2)
			require.NoError(t, err)
			_, err = NewConn(&bufConn{}, ServerSide, protocol, bytes.Clone(key))
			require.ErrorIs(t, err, ErrKeyReuse)
		})
	}
}

// TestNewConnRefusalsKeepTheKey checks that a NewConn that fails for a bad
// argument neither clears nor claims the key, so the caller can retry.
func TestNewConnRefusalsKeepTheKey(t *testing.T) {
	key := randomKey(t, AES128GCM)
	k := bytes.Clone(key)
	_, err := NewConn(&bufConn{}, ClientSide, AES128GCM, k, WithMaxFrameSize(1))
	require.Error(t, err)
	_, err = NewConn(&bufConn{}, Side(7), AES128GCM, k)
	require.Error(t, err)
	_, err = NewConn(&bufConn{}, ClientSide, AES128GCMRekey, k)
	require.ErrorIs(t, err, ErrKeySize)
	require.Equal(t, key, k, "a refused NewConn changed the key")
	_, err = NewConn(&bufConn{}, ClientSide, AES128GCM, k)
	require.NoError(t, err)
	_, err = NewConn(&bufConn{}, ClientSide, AES128GCM, make([]byte, 16))
	require.ErrorIs(t, err, ErrKeyReuse, "an all-zero key")
}

// TestKeyGuardBound documents the bound of the reuse check: a key is
// remembered until keyHistory other keys were claimed after it.
func TestKeyGuardBound(t *testing.T) {
	var g keyGuard
	first := randomKey(t, AES128GCM)
	require.True(t, g.claim(AES128GCM, ClientSide, first))
	require.False(t, g.claim(AES128GCM, ClientSide, first))
	require.True(t, g.claim(AES128GCM, ServerSide, first), "the other side")
	require.True(t, g.claim(AES128GCMRekey, ClientSide, first), "another protocol")
	for range keyHistory - 3 {
		require.True(t, g.claim(AES128GCM, ClientSide, randomKey(t, AES128GCM)))
	}
	require.False(t, g.claim(AES128GCM, ClientSide, first), "still remembered")
	require.True(t, g.claim(AES128GCM, ClientSide, randomKey(t, AES128GCM)))
	require.True(t, g.claim(AES128GCM, ClientSide, first), "forgotten after keyHistory other keys")
	require.Len(t, g.seen, keyHistory)
}
