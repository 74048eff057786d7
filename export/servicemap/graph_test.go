package servicemap

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate"
)

func span(svc string, kind trace.SpanKind, id, parent byte, start time.Time, d time.Duration, attrs ...attribute.KeyValue) *model.Span {
	return &model.Span{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{id}, ParentSpanID: trace.SpanID{parent},
		Kind: kind, Start: start, End: start.Add(d), Attributes: attrs,
		Process: model.NewProcess(1, "/bin/"+svc, svc, ""),
	}
}

func TestGraphPairsAndExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	g := New(time.Minute)
	g.now = func() time.Time { return now }
	var calls []Call
	g.OnCall = func(c Call) { calls = append(calls, c) }
	ctx := context.Background()

	// Client first, then its server span (another service).
	_ = g.Export(ctx, []*model.Span{span("gw", trace.SpanKindClient, 1, 9, now, 3*time.Millisecond)})
	_ = g.Export(ctx, []*model.Span{span("orders", trace.SpanKindServer, 2, 1, now, 2*time.Millisecond)})
	// Server first, then the client span that caused it, failed.
	s := span("orders", trace.SpanKindServer, 4, 3, now, time.Millisecond)
	c := span("gw", trace.SpanKindClient, 3, 9, now, 5*time.Millisecond)
	c.Status = codes.Error
	_ = g.Export(ctx, []*model.Span{s, c})
	// A database call, and a call to something untraced.
	_ = g.Export(ctx, []*model.Span{
		span("orders", trace.SpanKindClient, 5, 2, now, time.Millisecond, attribute.String("db.system.name", "postgresql"),
			attribute.String("server.address", "10.0.0.5"), attribute.Int("server.port", 5432)),
		span("gw", trace.SpanKindClient, 6, 9, now, 7*time.Millisecond, attribute.String("server.address", "api.example"), attribute.Int("server.port", 443)),
	})
	if m := g.Snapshot(); len(m.Edges) != 2 {
		t.Fatalf("before the external call expires: %d edges, want 2: %+v", len(m.Edges), m.Edges)
	}
	now = now.Add(match + time.Second)
	m := g.Snapshot()
	want := map[[2]string][2]int64{
		{"service:gw", "service:orders"}:                  {2, 1},
		{"service:orders", "db:postgresql 10.0.0.5:5432"}: {1, 0},
		{"service:gw", "external:api.example:443"}:        {1, 0},
	}
	if len(m.Edges) != len(want) {
		t.Fatalf("edges %+v", m.Edges)
	}
	for _, e := range m.Edges {
		w, ok := want[[2]string{e.Source, e.Target}]
		if !ok || e.Total.Requests != w[0] || e.Total.Errors != w[1] {
			t.Errorf("edge %s → %s: %d requests %d errors", e.Source, e.Target, e.Total.Requests, e.Total.Errors)
		}
	}
	if len(calls) != 4 || calls[0].ServerLatency != 2*time.Millisecond || calls[2].ServerLatency != 0 {
		t.Errorf("calls %+v", calls)
	}
	// Out of the window, in the total.
	now = now.Add(2 * time.Minute)
	for _, e := range g.Snapshot().Edges {
		if e.Window.Requests != 0 || e.Total.Requests == 0 {
			t.Errorf("edge %s → %s: window %d total %d", e.Source, e.Target, e.Window.Requests, e.Total.Requests)
		}
	}
	for _, f := range Formats {
		var b bytes.Buffer
		if err := Render(&b, m, f); err != nil || !strings.Contains(b.String(), "orders") {
			t.Errorf("format %s: %v\n%s", f, err, b.String())
		}
	}
}

// TestGraphConnections adds the endpoints only connections show: TLS named
// by its server name, unrecognised TCP by address; never a traced peer, an
// endpoint a client span reached, a server side, or a Go program's.
func TestGraphConnections(t *testing.T) {
	now := time.Unix(1000, 0)
	g := New(time.Minute)
	g.now = func() time.Time { return now }
	_ = g.Export(context.Background(), []*model.Span{span("py", trace.SpanKindClient, 1, 0, now, time.Millisecond,
		attribute.String("db.system.name", "redis"), attribute.String("server.address", "10.0.0.9"), attribute.Int("server.port", 6379),
		attribute.String("network.peer.address", "10.0.0.9"), attribute.Int("network.peer.port", 6379))})
	old := now.Add(-2 * time.Minute)
	g.Connections = func() []correlate.Conn {
		return []correlate.Conn{
			{Service: "py", Role: "client", Remote: "1.2.3.4:443", Protocol: "tls", ServerName: "api.llm.example", BytesSent: 100, BytesReceived: 900},
			{Service: "py", Role: "client", Remote: "1.2.3.5:443", Protocol: "tls", ServerName: "api.llm.example", Closed: &old, BytesSent: 1},
			{Service: "py", Role: "client", Remote: "10.0.0.7:9092", Protocol: "tcp", BytesSent: 5},
			{Service: "py", Role: "client", Remote: "10.0.0.9:6379", Protocol: "tcp"},           // reached by a span
			{Service: "py", Role: "client", Remote: "10.0.0.8:80", Protocol: "tcp", PeerPID: 4}, // traced here
			{Service: "py", Role: "server", Remote: "10.0.0.6:5000", Protocol: "tcp"},
			{Service: "gosvc", Role: "client", Remote: "10.0.0.5:7000"}, // a Go program's
			{Service: "py", Role: "client", Remote: "10.0.0.4:5432", Protocol: "postgresql"},
		}
	}
	m := g.Snapshot()
	got := map[string]Stats{}
	for _, e := range m.Edges {
		got[e.Source+" → "+e.Target] = e.Total
	}
	if len(got) != 3 {
		t.Fatalf("edges %v", got)
	}
	if s := got["service:py → external:api.llm.example:443"]; s.Connections != 2 || s.Bytes != 1001 || s.Requests != 0 {
		t.Errorf("TLS edge %+v", s)
	}
	if s := got["service:py → external:10.0.0.7:9092"]; s.Connections != 1 || s.Bytes != 5 {
		t.Errorf("TCP edge %+v", s)
	}
	for _, e := range m.Edges {
		if e.Target == "external:api.llm.example:443" && (e.Window.Connections != 1 || e.Window.Bytes != 1000) {
			t.Errorf("TLS edge window %+v", e.Window)
		}
	}
	var out bytes.Buffer
	if err := Render(&out, m, "dot"); err != nil || !strings.Contains(out.String(), "2 conn, 1001 bytes") {
		t.Errorf("dot: %v\n%s", err, out.String())
	}
}
