package servicemap

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate"
)

// span makes a span of svc with the given exchange (*model.HTTP,
// *model.DB, or none), through semconv as the correlator does.
func span(svc string, kind trace.SpanKind, id, parent byte, start time.Time, d time.Duration, exchange ...any) *model.Span {
	s := &model.Span{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{id}, ParentSpanID: trace.SpanID{parent},
		Kind: kind, Start: start, End: start.Add(d),
		Process: model.NewProcess(1, "/bin/"+svc, svc, ""),
	}
	for _, x := range exchange {
		switch x := x.(type) {
		case *model.HTTP:
			s.HTTP = x
		case *model.DB:
			s.DB = x
		}
	}
	semconv.Apply(s, nil)
	return s
}

func db(system, address string, port int, peer string) *model.DB {
	d := model.NewDB(system)
	d.ServerAddress, d.ServerPort = address, port
	if peer != "" {
		d.Peer = netip.MustParseAddrPort(peer)
	}
	return d
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
		span("orders", trace.SpanKindClient, 5, 2, now, time.Millisecond, db("postgresql", "10.0.0.5", 5432, "")),
		span("gw", trace.SpanKindClient, 6, 9, now, 7*time.Millisecond, &model.HTTP{Scheme: "https", Host: "api.example"}),
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
		db("redis", "10.0.0.9", 6379, "10.0.0.9:6379"))})
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

// TestGraphKeepsNewest: an edge keeps its newest samples and trace IDs,
// newest first, within bounds; bytes come from the HTTP exchange.
func TestGraphKeepsNewest(t *testing.T) {
	now := time.Unix(1000, 0)
	g := New(time.Minute)
	g.now = func() time.Time { return now }
	const n = maxSamples + 100
	for i := range n {
		s := span("orders", trace.SpanKindClient, 1, 0, now, time.Duration(i+1)*time.Microsecond,
			&model.HTTP{Host: "api.example:8080", Status: 200, RequestBodySize: 3, ResponseBodySize: 4, ResponseBodyKnown: true})
		s.TraceID = trace.TraceID{byte(i >> 8), byte(i)}
		_ = g.Export(context.Background(), []*model.Span{s})
		g.Flush()
	}
	m := g.Snapshot()
	if len(m.Edges) != 1 || m.Edges[0].Target != "external:api.example:8080" {
		t.Fatalf("edges %+v", m.Edges)
	}
	e := m.Edges[0]
	if e.Total.Requests != n || e.Total.Bytes != 7*n {
		t.Errorf("total %+v, want %d requests and %d bytes", e.Total, n, 7*n)
	}
	if len(g.edges[[2]string{"service:orders", "external:api.example:8080"}].samples) != maxSamples {
		t.Errorf("samples not bounded")
	}
	// The oldest 100 calls (1 to 100 µs) are gone from the percentiles.
	if e.Total.P50Ms < 2.1 || e.Total.P50Ms > 2.2 {
		t.Errorf("p50 %v ms over the newest %d samples, want about 2.15", e.Total.P50Ms, maxSamples)
	}
	if len(e.RecentTraces) != 10 {
		t.Fatalf("recent %v", e.RecentTraces)
	}
	for k, id := range e.RecentTraces {
		i := n - 1 - k
		if want := (trace.TraceID{byte(i >> 8), byte(i)}).String(); id != want {
			t.Errorf("recent[%d] = %s, want %s (newest first)", k, id, want)
		}
	}
}

// TestGraphMappedPeer: a peer seen as an IPv4-mapped IPv6 address by one
// path and as IPv4 by the connection table is one endpoint.
func TestGraphMappedPeer(t *testing.T) {
	now := time.Unix(1000, 0)
	g := New(time.Minute)
	g.now = func() time.Time { return now }
	_ = g.Export(context.Background(), []*model.Span{span("py", trace.SpanKindClient, 1, 0, now, time.Millisecond,
		db("redis", "cache", 6379, "[::ffff:10.0.0.9]:6379"))})
	g.Connections = func() []correlate.Conn {
		return []correlate.Conn{{Service: "py", Role: "client", Remote: "10.0.0.9:6379", Protocol: "tcp"}}
	}
	m := g.Snapshot()
	if len(m.Edges) != 1 || m.Edges[0].Target != "db:redis cache:6379" {
		t.Errorf("edges %+v", m.Edges)
	}
}

func TestGraphAllocations(t *testing.T) {
	now := time.Unix(1000, 0)
	g := New(time.Minute)
	g.now = func() time.Time { return now }
	client := span("gw", trace.SpanKindClient, 1, 0, now, time.Millisecond, &model.HTTP{Host: "orders:80", Status: 200})
	server := span("orders", trace.SpanKindServer, 2, 1, now, time.Millisecond, &model.HTTP{Host: "orders:80", Status: 200})
	query := span("orders", trace.SpanKindClient, 3, 2, now, time.Millisecond, db("postgresql", "db", 5432, "10.0.0.5:5432"))
	batch := []*model.Span{client, server, query}
	_ = g.Export(context.Background(), batch)
	if n := testing.AllocsPerRun(100, func() { _ = g.Export(context.Background(), batch) }); n != 0 {
		t.Errorf("%v allocations per batch of known nodes, want 0", n)
	}
}
