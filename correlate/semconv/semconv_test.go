package semconv

import (
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
)

func TestRoute(t *testing.T) {
	for pattern, want := range map[string]string{
		"":                         "",
		"/":                        "/",
		"/{$}":                     "/",
		"GET /users/{id}":          "/users/{id}",
		"POST  /items":             "/items",
		"example.com/static/":      "/static/",
		"GET example.com/a/{b...}": "/a/{b...}",
		"GET":                      "",
	} {
		if got := Route(pattern); got != want {
			t.Errorf("Route(%q) = %q, want %q", pattern, got, want)
		}
	}
}

// A Go program's call made outside any request is marked as background;
// one made for a request, a server span and a kernel-traced call are not.
func TestBackground(t *testing.T) {
	parent := trace.SpanID{1}
	for _, c := range []struct {
		name string
		span model.Span
		want bool
	}{
		{"go client without parent", model.Span{Kind: trace.SpanKindClient, Source: model.SourceGo}, true},
		{"go client of a request", model.Span{Kind: trace.SpanKindClient, Source: model.SourceGo, ParentSpanID: parent}, false},
		{"go server", model.Span{Kind: trace.SpanKindServer, Source: model.SourceGo}, false},
		{"kernel client without parent", model.Span{Kind: trace.SpanKindClient, Source: model.SourceKernel}, false},
	} {
		s := c.span
		s.DB = SQL("sqlite", "INSERT INTO _logs (id) VALUES (1)")
		Apply(&s, nil)
		got := false
		for _, kv := range s.Attributes {
			if kv.Key == "zerotrace.background" {
				got = kv.Value.AsBool()
			}
		}
		if got != c.want || s.Background() != c.want {
			t.Errorf("%s: zerotrace.background %v, Background() %v; want %v", c.name, got, s.Background(), c.want)
		}
	}
}
