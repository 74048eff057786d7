package correlate

import (
	"io"
	"log/slog"
	"testing"

	"github.com/zerotrace/zerotrace/correlate/model"
	"go.opentelemetry.io/otel/trace"
)

func attrs(s *model.Span) map[string]any {
	m := map[string]any{}
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func newTestCorrelator() *Correlator {
	return New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

func TestHandleCounts(t *testing.T) {
	c := newTestCorrelator()
	c.Register(model.NewProcess(1, "/x", "", "go1.26.8"))
	var n int
	ids := map[trace.SpanID]bool{}
	for _, ev := range []Event{
		&model.Span{PID: 1, Kind: trace.SpanKindServer, HTTP: &model.HTTP{Method: "GET"}},
		&model.Span{PID: 1, Kind: trace.SpanKindServer, HTTP: &model.HTTP{Method: "POST"}},
	} {
		for _, s := range c.HandleAll(ev) {
			n++
			ids[s.SpanID] = true
		}
	}
	c.Flush(func(*model.Span) { n++ })
	if n != 2 || len(ids) != 2 || c.Stats().Events.Load() != 2 || c.Stats().Spans.Load() != 2 {
		t.Errorf("got %d spans with %d distinct ids", n, len(ids))
	}
}
