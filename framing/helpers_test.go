package framing

import "encoding/binary"

func binaryLittle() binary.ByteOrder { return binary.LittleEndian }
