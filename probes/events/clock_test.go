package events

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestClockMatchesWallClock(t *testing.T) {
	c := NewClock()
	now := time.Now()
	mono := monotonicNow()
	got := c.Wall(mono)
	if d := got.Sub(now); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("converted monotonic time is %s off the wall clock", d)
	}
}

// monotonicNow reads CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
