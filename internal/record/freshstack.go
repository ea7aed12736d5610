package record

import (
	"runtime"
	"sync/atomic"
)

// A Job is work that OnFreshStack runs on a goroutine of its own.
type Job interface{ Run() error }

type freshJob struct {
	job  Job
	err  error
	done atomic.Bool // err is set
}

var (
	// freshQueue carries each job to the goroutine started for it: one
	// goroutine per job sent, started after the send, so each finds one.
	freshQueue = make(chan *freshJob, 64)
	// freshIdle keeps finished jobs for reuse.
	freshIdle = make(chan *freshJob, 64)
)

// OnFreshStack runs j on a goroutine of its own and waits for it, so that
// the stack j needs (key schedules, allocation) is not kept by the caller:
// a reader parks for as long as its connection is idle, and a goroutine
// whose stack once grew past 2 KiB keeps the larger stack while parked.
//
// It also keeps the runtime's allocator off the caller's stack: right after
// a collection, which is when an idle connection wakes to rebuild its
// cipher state, an allocation may refill the allocator's caches and sweep on
// the allocating goroutine's stack, deep enough to grow a 2 KiB one. So the
// goroutine starts without arguments (no closure), the job's record comes
// from a free list (allocated only when more jobs than ever before run at
// once), and the caller waits by yielding until the job is done rather than
// blocking on a channel or lock, which may allocate (a sudog) when the
// runtime's caches of them are empty, as a collection leaves them. Pass a
// pointer to a long-lived value as j, so that making the interface value
// allocates nothing either. The jobs it is for take microseconds.
func OnFreshStack(j Job) error {
	var f *freshJob
	select {
	case f = <-freshIdle:
	default:
		f = new(freshJob)
	}
	f.job = j
	freshQueue <- f // blocks only while more than 64 jobs wait for their goroutines
	go runFresh()
	for !f.done.Load() {
		runtime.Gosched()
	}
	err := f.err
	f.job, f.err = nil, nil
	f.done.Store(false)
	select {
	case freshIdle <- f:
	default:
	}
	return err
}

// runFresh runs one job from freshQueue.
func runFresh() {
	f := <-freshQueue
	f.err = f.job.Run()
	f.done.Store(true)
}
