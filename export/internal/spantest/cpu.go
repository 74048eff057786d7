package spantest

import (
	"syscall"
	"testing"
	"time"
)

// CPUTime is the CPU time the process has used so far, user and system,
// on every thread: a benchmark's figure that other programs on the machine
// disturb less than the time on the clock.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportCPU reports the CPU time used since start per operation, as
// cpu-ns/op: everything the process did, its other goroutines (an HTTP
// client's, a local receiver's, the garbage collector) included. It
// returns that time.
func ReportCPU(b *testing.B, start time.Duration) time.Duration {
	used := CPUTime() - start
	b.ReportMetric(float64(used)/float64(b.N), "cpu-ns/op")
	return used
}
