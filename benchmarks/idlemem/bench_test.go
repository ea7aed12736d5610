package main

import (
	"bytes"
	"testing"
)

// benchN is the number of connections each benchmark iteration opens.
const benchN = 500

// BenchmarkIdle measures every mode like the command does (a child process
// per measurement) and reports the idle cost per connection (both ends) as
// custom metrics, so that benchstat can compare runs:
//
//	go test -run='^$' -bench=Idle -benchtime=1x -count=6 ./benchmarks/idlemem | tee new.txt
//	go run golang.org/x/perf/cmd/benchstat@latest old.txt new.txt
//
// B/conn is heap + stack in use per connection, heap-B/conn and stack-B/conn
// its parts, pool-B the bytes the mode's readyconn pool had handed out while
// idle (0 for the readyconn modes). ns/op is the time to open, measure and
// close benchN connections and is not the point.
func BenchmarkIdle(b *testing.B) {
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			var r result
			for b.Loop() {
				var stderr bytes.Buffer
				var err error
				if r, err = measureInChild(childRequest{Mode: m.name, N: benchN, Options: defaultOptions}, true, &stderr); err != nil {
					b.Fatalf("%v\n%s", err, stderr.String())
				}
			}
			b.ReportMetric(r.TotalPerConn, "B/conn")
			b.ReportMetric(r.HeapPerConn, "heap-B/conn")
			b.ReportMetric(r.StackPerConn, "stack-B/conn")
			if r.PoolInUseBytes != nil {
				b.ReportMetric(float64(*r.PoolInUseBytes), "pool-B")
			}
		})
	}
}
