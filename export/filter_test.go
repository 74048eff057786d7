package export

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
)

type recordingSink struct{ got []string }

func (r *recordingSink) Name() string { return "recording" }
func (r *recordingSink) Export(_ context.Context, spans []*model.Span) error {
	for _, s := range spans {
		r.got = append(r.got, s.Name)
	}
	return nil
}
func (r *recordingSink) Shutdown(context.Context) error { return nil }

func TestFilterDropsBackground(t *testing.T) {
	rec := &recordingSink{}
	f := Filter(rec, func(s *model.Span) bool { return !s.Background() })
	spans := []*model.Span{
		{Name: "GET /", Kind: trace.SpanKindServer},
		{Name: "INSERT _logs", Kind: trace.SpanKindClient},
		{Name: "SELECT users", Kind: trace.SpanKindClient, ParentSpanID: trace.SpanID{1}},
	}
	if err := f.Export(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	if err := f.Export(context.Background(), spans[1:2]); err != nil {
		t.Fatal(err)
	}
	if len(rec.got) != 2 || rec.got[0] != "GET /" || rec.got[1] != "SELECT users" {
		t.Errorf("sink got %q, want the server span and the request's query", rec.got)
	}
	if f.Name() != "recording" {
		t.Errorf("Name() = %q", f.Name())
	}
}
