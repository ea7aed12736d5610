package bufferpool_test

import (
	"fmt"

	"github.com/readyconn/readyconn/bufferpool"
)

// A connection takes a buffer when bytes arrive and puts it back once they
// are consumed; Stats shows what is held in between.
func ExampleTiered() {
	pool := bufferpool.NewTiered()

	buf := pool.Get(1000) // 1000 bytes arrived
	fmt.Println("len", len(*buf), "cap", cap(*buf))
	st := pool.Stats()
	fmt.Println("in use:", st.InUseBuffers, "buffers,", st.InUseBytes, "bytes")

	pool.Put(buf) // consumed: the connection is idle again and holds nothing
	st = pool.Stats()
	fmt.Println("gets", st.Gets, "puts", st.Puts, "in use:", st.InUseBytes, "bytes")
	// Output:
	// len 1000 cap 1024
	// in use: 1 buffers, 1024 bytes
	// gets 1 puts 1 in use: 0 bytes
}

// ClassSize tells what capacity a request costs. Classes are a quarter of a
// power of two apart, so a request just over 32 KiB costs 40 KiB, not 64 KiB
// or 1 MiB; requests above the largest class are allocated exactly.
func ExampleTiered_ClassSize() {
	pool := bufferpool.Default()
	for _, n := range []int{0, 64, 65, 1000, 32<<10 + 1, 1<<20 + 1} {
		fmt.Println(n, "->", pool.ClassSize(n))
	}
	// Output:
	// 0 -> 64
	// 64 -> 64
	// 65 -> 80
	// 1000 -> 1024
	// 32769 -> 40960
	// 1048577 -> 1048577
}

// A debug pool poisons what is returned, catches a second Put and lists the
// buffers that were never returned.
func ExampleWithDebug() {
	pool := bufferpool.NewTiered(bufferpool.WithDebug())

	buf := pool.Get(8)
	copy(*buf, "secret!!")
	stale := *buf // a bug: a slice kept past Put
	pool.Put(buf)
	fmt.Printf("after Put: % x\n", stale)

	func() {
		defer func() { fmt.Println("panic:", recover()) }()
		pool.Put(buf)
	}()

	leaked := pool.Get(5000)
	for _, o := range pool.Outstanding() {
		fmt.Println("outstanding buffer of", o.Cap, "bytes")
	}
	pool.Put(leaked)
	fmt.Println("outstanding after Put:", len(pool.Outstanding()))
	// Output:
	// after Put: de ad be ef de ad be ef
	// panic: bufferpool: double Put of a buffer (cap 64) that was already returned to this pool
	// outstanding buffer of 5120 bytes
	// outstanding after Put: 0
}

// With WithZeroing every buffer is cleared on its way back, so secrets do not
// outlive their use and Get always returns zeros.
func ExampleWithZeroing() {
	pool := bufferpool.NewTiered(bufferpool.WithZeroing())
	key := pool.Get(16)
	copy(*key, "0123456789abcdef")
	stale := *key
	pool.Put(key)
	fmt.Println(stale)
	// Output:
	// [0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0]
}
