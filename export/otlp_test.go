package export

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/export/internal/spantest"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// oddSpans are spans that exercise every corner of the encoding.
func oddSpans() []*model.Span {
	p, q := spantest.Process(), model.NewProcess(7, "/usr/bin/python3", "", "")
	server, client, db := spantest.Server(p), spantest.Client(p), spantest.DB(q)
	odd := sampleSpan() // strings that are not UTF-8, floats, slices, an error
	odd.Process = q
	odd.StatusMsg = "bad \xff gateway"
	odd.Name = "GET \xfe"
	ts := spantest.Client(q)
	ts.TraceState = "vendor=a , other=b"
	badTS := spantest.Client(q)
	badTS.TraceState = "not a tracestate"
	root := spantest.Server(p)
	root.ParentSpanID = trace.SpanID{}
	root.TraceState = "ignored=1"
	root.Status = codes.Ok
	root.Kind = trace.SpanKindUnspecified
	many := spantest.Server(q)
	many.Attributes = nil
	for i := range maxAttributes + 5 {
		many.Attributes = append(many.Attributes, attribute.Int(fmt.Sprintf("k%d", i), i*1000))
	}
	many.Attributes = append(many.Attributes, attribute.KeyValue{}) // invalid: skipped
	long := spantest.DB(p)
	long.Attributes = []attribute.KeyValue{attribute.String("db.query.text", strings.Repeat("x", 20000))}
	short := &model.Span{Process: p, Kind: trace.SpanKindInternal}
	slices := spantest.Server(p)
	slices.Attributes = []attribute.KeyValue{
		attribute.BoolSlice("b", []bool{true, false}), attribute.Int64Slice("i", []int64{-1, 300}),
		attribute.Float64Slice("f", []float64{0.5}), attribute.StringSlice("s", []string{"", "\xff"}),
		attribute.Bool("t", true), attribute.Float64("d", -2.5), attribute.String("empty", ""),
	}
	return []*model.Span{server, client, db, odd, ts, badTS, root, many, long, short, slices}
}

func encodeBatch(t *testing.T, asJSON bool, spans []*model.Span) *coltrace.ExportTraceServiceRequest {
	t.Helper()
	b := otlpBatch{scope: &commonpb.InstrumentationScope{Name: scopeName, Version: "v1"}, json: asJSON}
	for _, s := range spans {
		b.add(s)
	}
	b.seal()
	raw, err := proto.Marshal(&coltrace.ExportTraceServiceRequest{ResourceSpans: b.out})
	if err != nil {
		t.Fatalf("marshal (json=%v): %v", asJSON, err)
	}
	b.reset()
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		t.Fatalf("unmarshal (json=%v): %v", asJSON, err)
	}
	return &req
}

// The spans written straight in wire format read, once decoded, exactly as
// the span messages of the JSON path do; and both say what the span says.
func TestOTLPWireMatchesMessages(t *testing.T) {
	spans := oddSpans()
	wire, msgs := encodeBatch(t, false, spans), encodeBatch(t, true, spans)
	if !proto.Equal(wire, msgs) {
		t.Fatalf("wire format and messages differ:\nwire %v\nmsgs %v", wire, msgs)
	}
	got := map[string]*tracepb.Span{}
	total := 0
	for _, rs := range wire.ResourceSpans {
		if len(rs.ScopeSpans) != 1 || rs.ScopeSpans[0].Scope.GetName() != scopeName || rs.ScopeSpans[0].Scope.GetVersion() != "v1" {
			t.Errorf("scope spans %v", rs.ScopeSpans)
		}
		for i, sp := range rs.ScopeSpans[0].Spans {
			got[fmt.Sprintf("%x/%s/%d", sp.SpanId, sp.Name, i)] = sp
			total++
		}
	}
	if len(wire.ResourceSpans) != 2 || total != len(spans) {
		t.Errorf("%d resources, %d spans; want 2 and %d", len(wire.ResourceSpans), total, len(spans))
	}
	server := got["00f067aa0ba90202/GET /users/{id}/0"]
	if server == nil {
		t.Fatalf("no server span in %v", got)
	}
	if server.Kind != tracepb.Span_SPAN_KIND_SERVER || server.Flags != 0x301 || fmt.Sprintf("%x", server.ParentSpanId) != "00f067aa0ba90201" ||
		server.StartTimeUnixNano != 1700000000123456789 || server.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
		t.Errorf("server span %v", server)
	}
	var seen int
	for _, sp := range got {
		for _, kv := range sp.Attributes {
			if s, ok := kv.Value.Value.(*commonpb.AnyValue_StringValue); ok && strings.Contains(s.StringValue, "\ufffd") {
				seen++
			}
		}
		switch {
		case sp.Name == "GET \ufffd":
			if sp.Status.Code != tracepb.Status_STATUS_CODE_ERROR || sp.Status.Message != "bad \ufffd gateway" {
				t.Errorf("error status %v", sp.Status)
			}
		case len(sp.Attributes) > 100:
			if len(sp.Attributes) != maxAttributes || sp.DroppedAttributesCount != 5 {
				t.Errorf("%d attributes, %d dropped", len(sp.Attributes), sp.DroppedAttributesCount)
			}
		case sp.Kind == tracepb.Span_SPAN_KIND_INTERNAL && sp.ParentSpanId == nil && sp.Name != "":
			if sp.TraceState != "" || sp.Flags != 0x101 || sp.Status.Code != tracepb.Status_STATUS_CODE_OK {
				t.Errorf("root span %v", sp)
			}
		}
	}
	if seen != 1 {
		t.Errorf("%d attribute strings made valid UTF-8, want 1", seen)
	}
	for _, rs := range wire.ResourceSpans {
		for _, sp := range rs.ScopeSpans[0].Spans {
			if sp.TraceState != "" && sp.TraceState != "vendor=a,other=b" {
				t.Errorf("tracestate %q", sp.TraceState)
			}
		}
	}
}

// With OTEL_EXPORTER_OTLP_PROTOCOL=http/json the spans go as OTLP/JSON,
// which has no place for bytes written in wire format: the messages path.
func TestOTLPJSONProtocol(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	bodies := make(chan []byte, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		bodies <- body
	}))
	defer srv.Close()
	o, err := NewOTLP(context.Background(), slog.New(slog.DiscardHandler), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := spantest.Process()
	if err := o.Export(context.Background(), []*model.Span{spantest.Server(p), spantest.DB(p)}); err != nil {
		t.Fatal(err)
	}
	if err := o.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var req struct {
		ResourceSpans []struct {
			ScopeSpans []struct {
				Spans []struct{ Name string }
			}
		}
	}
	if err := json.Unmarshal(<-bodies, &req); err != nil {
		t.Fatal(err)
	}
	if len(req.ResourceSpans) != 1 || len(req.ResourceSpans[0].ScopeSpans[0].Spans) != 2 {
		t.Errorf("JSON request %+v", req)
	}
}

// An endpoint that fails makes the batch count as failed, not pile up.
func TestOTLPCountsFailures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusBadRequest) // not retried
	}))
	defer srv.Close()
	o, err := NewOTLP(context.Background(), slog.New(slog.DiscardHandler), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := spantest.Process()
	_ = o.Export(context.Background(), spantest.Batch(spantest.Server(p), maxBatch+3))
	if o.Failed() != maxBatch {
		t.Errorf("failed %d after a full batch, want %d", o.Failed(), maxBatch)
	}
	err = o.Shutdown(context.Background())
	if o.Failed() != maxBatch+3 || o.Exported() != 0 || err == nil || !strings.Contains(err.Error(), "515 spans could not be delivered") {
		t.Errorf("failed %d exported %d, shutdown error %v", o.Failed(), o.Exported(), err)
	}
}

// Spans waiting in a batch that does not fill go out after batchTimeout.
func TestOTLPFlushesPartialBatch(t *testing.T) {
	srv, bytes := countingReceiver(t)
	o, err := NewOTLP(context.Background(), slog.New(slog.DiscardHandler), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Shutdown(context.Background())
	_ = o.Export(context.Background(), []*model.Span{spantest.Server(spantest.Process())})
	deadline := time.Now().Add(10 * batchTimeout)
	for o.Exported() != 1 && time.Now().Before(deadline) {
		time.Sleep(batchTimeout / 10)
	}
	if o.Exported() != 1 || bytes.Load() == 0 {
		t.Errorf("exported %d (%d bytes) after %v", o.Exported(), bytes.Load(), 10*batchTimeout)
	}
}

// TestSinksForgetGoneProcesses: 1,000 short-lived processes, each producing
// a span and then gone, leave nothing behind in the sinks: no goroutine,
// no entry in their per-process state.
func TestSinksForgetGoneProcesses(t *testing.T) {
	srv, _ := countingReceiver(t)
	o, err := NewOTLP(context.Background(), slog.New(slog.DiscardHandler), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Shutdown(context.Background())
	j := NewJSONLines(io.Discard)
	ctx := context.Background()
	// A long-lived process, present before and after.
	server := spantest.Process()
	steady := []*model.Span{spantest.Server(server)}
	for _, sink := range []Sink{o, j} {
		_ = sink.Export(ctx, steady)
	}
	o.mu.Lock()
	_ = o.flushLocked(ctx)
	o.mu.Unlock()
	goroutines := runtime.NumGoroutine()
	otlpBefore, jsonBefore := o.processes(), j.resources.len()

	for i := range 1000 {
		p := model.NewProcess(uint32(10000+i), "/srv/bin/worker", "", "go1.26.8")
		s := spantest.Client(p)
		for _, sink := range []Sink{o, j} {
			_ = sink.Export(ctx, []*model.Span{s})
		}
		p.MarkGone()
	}
	if o.processes() < 500 || j.resources.len() < 500 {
		t.Fatalf("state of %d (OTLP) and %d (JSON) processes while they ran: the test does not test", o.processes(), j.resources.len())
	}
	// The next spans let the sinks notice.
	for range 3 {
		for _, sink := range []Sink{o, j} {
			_ = sink.Export(ctx, spantest.Batch(steady[0], maxBatch))
		}
	}
	if o.processes() != otlpBefore || j.resources.len() != jsonBefore {
		t.Errorf("per-process state: OTLP %d, JSON %d; want %d and %d as before", o.processes(), j.resources.len(), otlpBefore, jsonBefore)
	}
	o.mu.Lock()
	_ = o.flushLocked(ctx)
	o.mu.Unlock()
	if o.Exported() != 1+1000+3*maxBatch || o.Failed() != 0 {
		t.Errorf("exported %d failed %d", o.Exported(), o.Failed())
	}
	// Goroutines may take a moment to end; the HTTP client may hold one
	// more idle connection than before.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines+2 {
		t.Errorf("%d goroutines after 1,000 processes came and went, %d before", n, goroutines)
	}
}
