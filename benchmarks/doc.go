// Package benchmarks holds the side-by-side Go benchmarks that compare each
// readyconn layer with what users would pick instead (see README.md in this
// directory). The idle-memory comparison is the command in ./idlemem.
package benchmarks
