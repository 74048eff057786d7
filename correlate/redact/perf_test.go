package redact

import (
	"strings"
	"testing"
	"time"
)

// TestLinearTime feeds long pathological inputs and checks that the time
// grows linearly: a quadratic scanner on a 1 MB value would stall the agent.
func TestLinearTime(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	r := mustNew(t, Config{})
	units := []string{
		"1 ", "1-", "1.", "+1 ", "(1) ", "12345678 ", "a@", "@a.", "a@b.c ", "=", "a=", "k=v&",
		"token=", ":", "a: ", "\"a\":", "\"token\":", "://", "://a:b", "://a:", "u:p@tcp(",
		"eyJaaaaaaaaaaaaaaaa.", "Bearer ", "sk-", "%2B1", "x", "\\\"", "{", "'", "$$", "/*", "--", "IN (1,",
	}
	for _, u := range units {
		small := strings.Repeat(u, 2000)
		big := strings.Repeat(u, 64000)
		ts := timeIt(func() { r.String(small); r.URL(small); r.URLQuery(small); SanitizeSQL(small); SQLCollection(small) })
		tb := timeIt(func() { r.String(big); r.URL(big); r.URLQuery(big); SanitizeSQL(big); SQLCollection(big) })
		// 32 times the input; allow a generous factor for noise on a busy
		// machine (a small run that got the core to itself against a big
		// one that was preempted), still far below the 1024 a quadratic
		// scan would take.
		if tb > 300*ts && tb > 50*time.Millisecond {
			t.Errorf("%q: %v for %d bytes but %v for %d bytes", u, ts, len(small), tb, len(big))
		}
	}
}

func timeIt(f func()) time.Duration {
	best := time.Duration(1 << 62)
	for range 5 {
		start := time.Now()
		f()
		best = min(best, time.Since(start))
	}
	return best
}
