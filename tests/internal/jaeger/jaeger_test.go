package jaeger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// otlpSpan is the little of an OTLP span this test sends.
type otlpSpan struct {
	traceID, spanID, parentID string
	name                      string
	kind                      int // OTLP SpanKind: 2 server, 3 client
	start                     time.Time
	duration                  time.Duration
	attrs                     map[string]string
}

// otlpJSON renders one OTLP/JSON ExportTraceServiceRequest with one resource
// per service. In OTLP/JSON, IDs are hex strings and 64-bit integers
// (timestamps included) are decimal strings.
func otlpJSON(t *testing.T, spansByService map[string][]otlpSpan) []byte {
	t.Helper()
	type kv = map[string]any
	var resourceSpans []kv
	for service, spans := range spansByService {
		var out []kv
		for _, s := range spans {
			var attrs []kv
			for k, v := range s.attrs {
				attrs = append(attrs, kv{"key": k, "value": kv{"stringValue": v}})
			}
			span := kv{
				"traceId":           s.traceID,
				"spanId":            s.spanID,
				"name":              s.name,
				"kind":              s.kind,
				"startTimeUnixNano": strconv.FormatInt(s.start.UnixNano(), 10),
				"endTimeUnixNano":   strconv.FormatInt(s.start.Add(s.duration).UnixNano(), 10),
				"attributes":        attrs,
			}
			if s.parentID != "" {
				span["parentSpanId"] = s.parentID
			}
			out = append(out, span)
		}
		resourceSpans = append(resourceSpans, kv{
			"resource": kv{"attributes": []kv{
				{"key": "service.name", "value": kv{"stringValue": service}},
				{"key": "process.pid", "value": kv{"intValue": "1234"}},
			}},
			"scopeSpans": []kv{{"scope": kv{"name": "jaeger-test"}, "spans": out}},
		})
	}
	body, err := json.Marshal(kv{"resourceSpans": resourceSpans})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func postOTLP(t *testing.T, j *Jaeger, body []byte) {
	t.Helper()
	resp, err := http.Post(j.OTLPEndpoint()+"/v1/traces", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/traces: %s: %s", resp.Status, answer)
	}
	// A 200 can still report rejected spans.
	var r struct {
		PartialSuccess struct {
			RejectedSpans string `json:"rejectedSpans"`
			ErrorMessage  string `json:"errorMessage"`
		} `json:"partialSuccess"`
	}
	if err := json.Unmarshal(answer, &r); err != nil {
		t.Fatalf("POST /v1/traces: decoding %q: %v", answer, err)
	}
	if ps := r.PartialSuccess; (ps.RejectedSpans != "" && ps.RejectedSpans != "0") || ps.ErrorMessage != "" {
		t.Fatalf("POST /v1/traces: partial success %+v", ps)
	}
}

// TestRoundTrip starts the real Jaeger, sends it spans over OTLP/HTTP and
// reads them back through Traces, Services and WaitForSpans.
func TestRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Jaeger (and builds it when not cached)")
	}
	j := Start(t)
	ctx := t.Context()

	service := fmt.Sprintf("roundtrip-%d", time.Now().UnixNano())
	// Nanoseconds that Jaeger's microsecond precision drops.
	start := time.Now().Add(-time.Second).Truncate(time.Microsecond).Add(789 * time.Nanosecond)
	const traceA, traceB = "4bf92f3577b34da6a3ce929d0e0e4736", "5bf92f3577b34da6a3ce929d0e0e4736"
	spans := []otlpSpan{
		{traceID: traceA, spanID: "00f067aa0ba902b7", name: "GET /hello", kind: 2, start: start, duration: 1500 * time.Microsecond,
			attrs: map[string]string{"http.request.method": "GET", "url.path": "/hello"}},
		{traceID: traceA, spanID: "00f067aa0ba902b8", parentID: "00f067aa0ba902b7", name: "inner", kind: 3, start: start.Add(100 * time.Microsecond), duration: time.Millisecond},
		{traceID: traceB, spanID: "10f067aa0ba902b7", name: "GET /bench", kind: 2, start: start.Add(time.Millisecond), duration: 2 * time.Millisecond},
	}
	// A span of another service inside trace A: Traces returns it with the
	// trace, WaitForSpans must leave it out.
	other := []otlpSpan{{traceID: traceA, spanID: "20f067aa0ba902b7", parentID: "00f067aa0ba902b8", name: "downstream", kind: 2, start: start.Add(200 * time.Microsecond), duration: 100 * time.Microsecond}}
	postOTLP(t, j, otlpJSON(t, map[string][]otlpSpan{service: spans, service + "-other": other}))

	// Ask for fewer than were sent: all of them come back.
	got, err := j.WaitForSpans(ctx, service, 2, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(spans) {
		t.Fatalf("WaitForSpans returned %d spans, want %d: %+v", len(got), len(spans), got)
	}
	for i, want := range spans {
		g := got[i] // sorted by start time, as sent
		wantKind := map[int]string{2: "server", 3: "client"}[want.kind]
		if g.TraceID != want.traceID || g.SpanID != want.spanID || g.ParentSpanID != want.parentID ||
			g.OperationName != want.name || g.Kind != wantKind || g.Process.ServiceName != service {
			t.Errorf("span %d: got %+v, want %+v", i, g, want)
		}
		if wantStart := want.start.Truncate(time.Microsecond); !g.StartTime.Equal(wantStart) || g.Duration != want.duration {
			t.Errorf("span %d: start %v duration %v, want %v and %v", i, g.StartTime, g.Duration, wantStart, want.duration)
		}
		for k, v := range want.attrs {
			if g.Tags[k] != v {
				t.Errorf("span %d: tag %s = %#v, want %q", i, k, g.Tags[k], v)
			}
		}
		if pid := g.Process.Tags["process.pid"]; pid != int64(1234) {
			t.Errorf("span %d: process.pid = %#v, want 1234", i, pid)
		}
	}

	traces, err := j.Traces(ctx, service, 10)
	if err != nil {
		t.Fatal(err)
	}
	spanCount := map[string]int{}
	for _, tr := range traces {
		spanCount[tr.TraceID] = len(tr.Spans)
	}
	if want := map[string]int{traceA: 3, traceB: 1}; fmt.Sprint(spanCount) != fmt.Sprint(want) {
		t.Errorf("Traces: spans per trace %v, want %v", spanCount, want)
	}

	services, err := j.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(services, service) || !slices.Contains(services, service+"-other") {
		t.Errorf("Services = %q, want %s and %s-other among them", services, service, service)
	}

	// Waiting for more spans than exist times out with a helpful error and
	// the spans found so far.
	got, err = j.WaitForSpans(ctx, service, 4, time.Second)
	if err == nil || !strings.Contains(err.Error(), "want at least 4") || !strings.Contains(err.Error(), service) {
		t.Errorf("WaitForSpans beyond what exists: err %v", err)
	}
	if len(got) != len(spans) {
		t.Errorf("WaitForSpans on timeout returned %d spans, want the %d found", len(got), len(spans))
	}

	if _, err := j.Traces(ctx, service, MaxTraces+1); err == nil {
		t.Errorf("Traces with limit above MaxTraces: no error")
	}

	// While Jaeger runs its ports are taken, and the message says by whom.
	if err := checkPortFree(otlpAddr); err == nil || !strings.Contains(err.Error(), "jaeger") {
		t.Errorf("checkPortFree(%s) while Jaeger runs: %v, want an error naming jaeger", otlpAddr, err)
	}
}

// TestStartTwice checks that Jaeger's ports are free again after cleanup, so
// that tests can start one after the other.
func TestStartTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Jaeger")
	}
	for i := range 2 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			j := Start(t)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if _, err := j.Services(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
