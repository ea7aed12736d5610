//go:build !unix

package alts

// rawPathExpected is false where readyreader falls back to blocking reads,
// which pin their buffer while waiting by design.
const rawPathExpected = false
