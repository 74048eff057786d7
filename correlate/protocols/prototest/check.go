package prototest

import (
	"slices"
	"testing"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// WantAttrs checks the span's attributes named in want ("" for none).
func WantAttrs(t testing.TB, s *model.Span, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := Attr(s, k); got != v {
			t.Errorf("span %q: %s = %q, want %q", s.Name, k, got, v)
		}
	}
}

// WantNames checks the spans' names, in order.
func WantNames(t testing.TB, spans []*model.Span, names ...string) {
	t.Helper()
	var got []string
	for _, s := range spans {
		got = append(got, s.Name)
	}
	if !slices.Equal(got, names) {
		t.Fatalf("spans %q, want %q", got, names)
	}
}

// NoPanic runs f and fails the test, instead of the whole binary, if it
// panics: the input a traced process or its server can send must not crash
// the agent.
func NoPanic(t testing.TB, what string, f func()) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("%s: panic %v", what, p)
		}
	}()
	f()
}
