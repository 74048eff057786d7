package jaeger

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testdata/traces.json is a real /api/traces?service=capture-svc response
// of the Jaeger built from tests/tools (v1.76.0), captured after posting one
// OTLP/JSON request with resource {service.name: capture-svc, process.pid:
// 4242, host.name: testhost} and three spans:
//   - trace 0af7...319c: server span b7ad6b7169203331 "GET /users/{id}",
//     1234567 ns long, with attributes of every OTLP type;
//   - its child 00f067aa0ba902b7 "child", kind client, status error "boom",
//     starting 1000 ns later and lasting 1000 ns;
//   - trace 11f7...319c: server span c7ad6b7169203331 "old", two hours
//     before the others.
func TestParseTraces(t *testing.T) {
	body, err := os.ReadFile("testdata/traces.json")
	if err != nil {
		t.Fatal(err)
	}
	traces, err := parseTraces(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(traces) != 2 {
		t.Fatalf("got %d traces, want 2", len(traces))
	}
	spans := map[string]Span{}
	for _, tr := range traces {
		if len(tr.Processes) != 1 || tr.Processes["p1"].ServiceName != "capture-svc" {
			t.Errorf("trace %s: processes %+v, want p1 = capture-svc", tr.TraceID, tr.Processes)
		}
		for _, s := range tr.Spans {
			if s.TraceID != tr.TraceID {
				t.Errorf("span %s has trace ID %s inside trace %s", s.SpanID, s.TraceID, tr.TraceID)
			}
			spans[s.SpanID] = s
		}
	}
	if len(spans) != 3 {
		t.Fatalf("got %d spans, want 3", len(spans))
	}

	// Times are microseconds on the wire: 1234567 ns comes back as 1234 µs.
	start := time.UnixMicro(1795710434105450).UTC()
	server := spans["b7ad6b7169203331"]
	checkSpan(t, server, Span{
		TraceID:       "0af7651916cd43dd8448eb211c80319c",
		SpanID:        "b7ad6b7169203331",
		OperationName: "GET /users/{id}",
		Kind:          "server",
		StartTime:     start,
		Duration:      1234 * time.Microsecond,
	})
	wantTags := map[string]any{
		"http.request.method":       "GET",
		"http.response.status_code": int64(200),
		"big":                       int64(9007199254740993), // 2^53+1: a JSON string on the wire
		"ratio":                     0.5,
		"ok":                        true,
		"raw":                       []byte{1, 2, 3},
		"span.kind":                 "server",
		"otel.scope.name":           "zerotrace",
		"otel.scope.version":        "0.0.1",
	}
	checkTags(t, "server span", server.Tags, wantTags)
	if server.Process.ServiceName != "capture-svc" {
		t.Errorf("service %q, want capture-svc", server.Process.ServiceName)
	}
	checkTags(t, "process", server.Process.Tags, map[string]any{"process.pid": int64(4242), "host.name": "testhost"})

	child := spans["00f067aa0ba902b7"]
	checkSpan(t, child, Span{
		TraceID:       "0af7651916cd43dd8448eb211c80319c",
		SpanID:        "00f067aa0ba902b7",
		ParentSpanID:  "b7ad6b7169203331",
		OperationName: "child",
		Kind:          "client",
		StartTime:     start.Add(time.Microsecond),
		Duration:      time.Microsecond,
	})
	for k, want := range map[string]any{"error": true, "otel.status_code": "ERROR", "otel.status_description": "boom"} {
		if got := child.Tags[k]; got != want {
			t.Errorf("child tag %s = %#v, want %#v", k, got, want)
		}
	}

	old := spans["c7ad6b7169203331"]
	if want := start.Add(-2 * time.Hour); !old.StartTime.Equal(want) {
		t.Errorf("old span starts at %v, want %v", old.StartTime, want)
	}
}

func checkSpan(t *testing.T, got, want Span) {
	t.Helper()
	if got.TraceID != want.TraceID || got.SpanID != want.SpanID || got.ParentSpanID != want.ParentSpanID ||
		got.OperationName != want.OperationName || got.Kind != want.Kind ||
		!got.StartTime.Equal(want.StartTime) || got.Duration != want.Duration {
		t.Errorf("span:\n got  trace=%s span=%s parent=%q op=%q kind=%q start=%v dur=%v\n want trace=%s span=%s parent=%q op=%q kind=%q start=%v dur=%v",
			got.TraceID, got.SpanID, got.ParentSpanID, got.OperationName, got.Kind, got.StartTime, got.Duration,
			want.TraceID, want.SpanID, want.ParentSpanID, want.OperationName, want.Kind, want.StartTime, want.Duration)
	}
}

func checkTags(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d tags %v, want %d %v", what, len(got), got, len(want), want)
	}
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: tag %s missing", what, k)
		case isBytes(w):
			if gb, ok := g.([]byte); !ok || !bytes.Equal(gb, w.([]byte)) {
				t.Errorf("%s: tag %s = %#v, want %#v", what, k, g, w)
			}
		case g != w:
			t.Errorf("%s: tag %s = %#v (%T), want %#v (%T)", what, k, g, g, w, w)
		}
	}
}

func isBytes(v any) bool {
	_, ok := v.([]byte)
	return ok
}

func TestDecodeServices(t *testing.T) {
	body, err := os.ReadFile("testdata/services.json")
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	if err := decodeResponse(body, &services); err != nil {
		t.Fatal(err)
	}
	if len(services) != 1 || services[0] != "capture-svc" {
		t.Errorf("services %q, want [capture-svc]", services)
	}
}

// Jaeger reports query errors in the envelope, e.g. for a limit above
// max_traces (this body is verbatim from Jaeger v1.76.0).
func TestDecodeErrorResponse(t *testing.T) {
	body := `{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":500,"msg":"search depth must be greater than 0 and less than max traces"}]}`
	_, err := parseTraces([]byte(body))
	if err == nil || !strings.Contains(err.Error(), "search depth") {
		t.Errorf("got error %v, want the query API's message", err)
	}
	// An empty result is not an error.
	traces, err := parseTraces([]byte(`{"data":[],"total":0,"limit":0,"offset":0,"errors":null}`))
	if err != nil || len(traces) != 0 {
		t.Errorf("empty result: got %v, %v", traces, err)
	}
}

func TestPortOwner(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	owner, err := portOwner(port)
	if err != nil {
		t.Fatal(err)
	}
	if want := "pid " + strconv.Itoa(os.Getpid()) + " ("; !strings.HasPrefix(owner, want) {
		t.Errorf("portOwner(%s) = %q, want prefix %q", port, owner, want)
	}
	if err := checkPortFree(ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("checkPortFree on a used port: %v, want an error naming this process", err)
	}
}
