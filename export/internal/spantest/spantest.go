// Package spantest builds realistic spans for the sinks' tests and
// benchmarks: each goes through semconv.Apply, as the correlator's spans
// do, so that exchange fields are redacted and attributes are the ones
// exporters really see.
package spantest

import (
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
)

// Process is a traced Go service.
func Process() *model.Process {
	return model.NewProcess(4242, "/srv/bin/orders", "", "go1.26.8")
}

var (
	start   = time.Unix(1700000000, 123456789)
	traceID = trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
)

func span(p *model.Process, kind trace.SpanKind, id, parent byte, d time.Duration) *model.Span {
	return &model.Span{
		TraceID:      traceID,
		SpanID:       trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, id},
		ParentSpanID: trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, parent},
		Kind:         kind,
		Start:        start,
		End:          start.Add(d),
		PID:          p.PID,
		Process:      p,
	}
}

// Server is an HTTP server span of p: GET /users/7 matched by
// /users/{id}, answered 200 with 512 bytes, child of a remote caller.
func Server(p *model.Process) *model.Span {
	s := span(p, trace.SpanKindServer, 2, 1, 1234*time.Microsecond)
	s.HTTP = &model.HTTP{
		Method: "GET", Scheme: "http", Host: "orders:8080", Path: "/users/7", Route: "/users/{id}", Version: "1.1",
		Status: 200, ResponseBodySize: 512, ResponseBodyKnown: true,
		Local: netip.MustParseAddrPort("10.0.0.2:8080"), Peer: netip.MustParseAddrPort("10.0.0.1:51234"),
	}
	semconv.Apply(s, nil)
	return s
}

// Client is an HTTP client span of p, child of Server: GET
// http://inventory:9000/stock/7?verbose=1 answered 200.
func Client(p *model.Process) *model.Span {
	s := span(p, trace.SpanKindClient, 3, 2, 456*time.Microsecond)
	s.HTTP = &model.HTTP{
		Method: "GET", Scheme: "http", Host: "inventory:9000", Path: "/stock/7", Query: "verbose=1", Version: "1.1",
		Status: 200, ResponseBodySize: 64, ResponseBodyKnown: true,
		Peer: netip.MustParseAddrPort("10.0.0.3:9000"),
	}
	semconv.Apply(s, nil)
	return s
}

// DB is a PostgreSQL query span of p, child of Server.
func DB(p *model.Process) *model.Span {
	s := span(p, trace.SpanKindClient, 4, 2, 321*time.Microsecond)
	s.DB = semconv.SQL("postgresql", "SELECT id, name, email FROM users WHERE id = 7")
	s.DB.Namespace = "shop"
	s.DB.ServerAddress = "db"
	s.DB.ServerPort = 5432
	s.DB.Peer = netip.MustParseAddrPort("10.0.0.5:5432")
	s.DB.Transport = "tcp"
	s.DB.ReturnedRows = 1
	semconv.Apply(s, nil)
	return s
}

// GenAIClient is a model call p makes, child of Server: a streamed chat
// completion to an OpenAI-compatible server at models:8000 asking for
// gpt-test, answered by gpt-test-1 in 6 chunks (first after 80 ms, last at
// 130 ms, the span ends at 140 ms), 11 input and 5 output tokens, priced
// at 0.0001 US dollars.
func GenAIClient(p *model.Process) *model.Span {
	s := span(p, trace.SpanKindClient, 5, 2, 140*time.Millisecond)
	s.HTTP = &model.HTTP{
		Method: "POST", Scheme: "http", Host: "models:8000", Path: "/v1/chat/completions", Version: "1.1",
		Status: 200, Peer: netip.MustParseAddrPort("10.0.0.9:8000"),
	}
	g := s.UseGenAI()
	g.API, g.Operation, g.Provider = model.GenAIChatCompletions, "chat", "openai"
	g.RequestModel, g.ResponseModel, g.Stream = "gpt-test", "gpt-test-1", true
	g.Usage.Input, g.Usage.Output = 11, 5
	g.FirstChunk, g.FirstToken, g.LastChunk = start.Add(80*time.Millisecond), start.Add(90*time.Millisecond), start.Add(130*time.Millisecond)
	g.Chunks, g.ContentChunks = 6, 5
	g.CostUSD, g.Priced = 0.0001, true
	g.End = model.GenAIEndDone
	semconv.Apply(s, nil)
	return s
}

// Shapes are the spans each sink is measured with, by name.
var Shapes = []struct {
	Name string
	Make func(*model.Process) *model.Span
}{
	{"server", Server},
	{"client", Client},
	{"db", DB},
}

// Batch returns n copies of s (distinct spans, as the fan-out hands a
// sink).
func Batch(s *model.Span, n int) []*model.Span {
	out := make([]*model.Span, n)
	for i := range out {
		c := *s
		out[i] = &c
	}
	return out
}
