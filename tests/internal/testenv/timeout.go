package testenv

import (
	"math"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TimeoutScaleEnv names a factor, a number of at least 1, by which Timeout
// multiplies the bounds the tests put on how long something may take
// (starting or stopping a process, a request, the kernel releasing
// objects). The kernel matrix sets it in its guests: under QEMU's TCG code
// runs 10-15 times slower, and two guests share the host's cores, so a
// bound meant to catch a hang on the host would fail a healthy run there.
// It scales only deadlines, never what the tests assert.
const TimeoutScaleEnv = "ZEROTRACE_TIMEOUT_SCALE"

var (
	scaleOnce sync.Once
	scale     float64
	scaleErr  string
)

// Timeout returns d multiplied by TimeoutScaleEnv (d itself when unset). A
// value that is not a number of at least 1 fails the test: a typo must not
// silently shorten or keep every deadline.
func Timeout(t testing.TB, d time.Duration) time.Duration {
	t.Helper()
	scaleOnce.Do(func() {
		var ok bool
		if scale, ok = parseTimeoutScale(os.Getenv(TimeoutScaleEnv)); !ok {
			scaleErr = TimeoutScaleEnv + "=" + strconv.Quote(os.Getenv(TimeoutScaleEnv)) + " is not a number of at least 1"
		}
	})
	if scaleErr != "" {
		t.Fatal(scaleErr)
	}
	return time.Duration(float64(d) * scale)
}

// parseTimeoutScale reads a TimeoutScaleEnv value; "" means 1.
func parseTimeoutScale(v string) (float64, bool) {
	if v == "" {
		return 1, true
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f >= 1) || math.IsInf(f, 0) { // !(f >= 1) also rejects NaN
		return 1, false
	}
	return f, true
}
