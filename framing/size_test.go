package framing

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// TestIdleSizes keeps what an idle Reader and Writer hold small: both live
// as long as their connection, so every byte here is paid per connection
// (idlemem's framing mode). The limits are the runtime's size classes the
// structs fit today on 64-bit platforms; state only some connections need
// (a header split across reads, a frame written in vectored pieces) is
// allocated when first needed.
func TestIdleSizes(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the budgets are for 64-bit platforms")
	}
	require.LessOrEqual(t, unsafe.Sizeof(Reader{}), uintptr(352), "Reader")
	require.LessOrEqual(t, unsafe.Sizeof(Writer{}), uintptr(160), "Writer")
}
