//go:build unix

package alts

// rawPathExpected says that readyreader waits on a bare socket without a
// buffer here, so tests over TCP can assert that an idle Conn owns nothing.
const rawPathExpected = true
