package client

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/correlate/model"
)

func attrs(s *model.Span) map[string]any {
	m := map[string]any{}
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func newTestCorrelator() *correlate.Correlator {
	return correlate.New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

// TestSpansAreRedacted: what leaves the correlator has been through the
// default redactor, each attribute read by its kind.
func TestSpansAreRedacted(t *testing.T) {
	c := newTestCorrelator()
	c.Register(model.NewProcess(10, "/bin/app", "", "go1.26.8"))
	start := time.Unix(100, 0)
	cli := c.Handle((&RoundTrip{
		PID: 10, Start: start, End: start.Add(time.Millisecond),
		Method: "GET", Scheme: "https", Host: "api.example.com", Path: "/v1/chat",
		RawQuery: "access_token=sk-proj-abcdefghijklmnopqrstuvwx&model=small", HasResponse: true, Status: 200,
	}).Span())
	got := map[string]any{}
	for k, v := range attrs(cli) {
		got["client "+k] = v
	}
	for k, want := range map[string]string{
		"client url.full": "https://api.example.com/v1/chat?access_token=REDACTED&model=small",
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %q", k, got[k], want)
		}
	}
}
