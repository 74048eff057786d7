package events

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts bpf_ktime_get_ns() timestamps (CLOCK_MONOTONIC) to wall
// clock time. The offset between the two clocks drifts when NTP slews the
// wall clock, so it is re-measured by Sync, which the reader calls
// periodically.
type Clock struct {
	offset atomic.Int64 // wall - monotonic, in nanoseconds
}

// NewClock returns a synced Clock.
func NewClock() *Clock {
	c := &Clock{}
	c.Sync()
	return c
}

// Sync re-measures the offset between the clocks. It reads the wall clock
// on both sides of the monotonic one and keeps the tightest of a few tries,
// which puts the error well under a microsecond.
func (c *Clock) Sync() {
	best := int64(-1)
	var offset int64
	for range 5 {
		var w1, m, w2 unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_REALTIME, &w1)
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m)
		_ = unix.ClockGettime(unix.CLOCK_REALTIME, &w2)
		spread := w2.Nano() - w1.Nano()
		if best < 0 || spread < best {
			best = spread
			offset = w1.Nano() + spread/2 - m.Nano()
		}
	}
	c.offset.Store(offset)
}

// Wall converts a monotonic timestamp in nanoseconds to wall clock time.
func (c *Clock) Wall(monoNs uint64) time.Time {
	return time.Unix(0, int64(monoNs)+c.offset.Load())
}

// FixedClock returns a Clock whose wall time is the monotonic time plus
// offset nanoseconds, never re-measured: for tests of decoders.
func FixedClock(offset int64) *Clock {
	c := &Clock{}
	c.offset.Store(offset)
	return c
}
