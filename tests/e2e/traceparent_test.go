package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/jaeger"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// incoming is one request of TestIncomingTraceparent: the trace context
// headers it carries and what the server span must make of them.
type incoming struct {
	name        string
	traceparent string // "" sends none
	tracestate  string
	extra       int // more headers, to grow the header map past one group
	// continued: the span must continue the header's trace as a child of
	// its span; otherwise it must be a new root.
	continued bool
	// wantState is the trace_state the JSON output must show.
	wantState string
}

const (
	tpTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	tpSpan  = "00f067aa0ba902b7"
)

var incomingCases = []incoming{
	{name: "plain", traceparent: "00-" + tpTrace + "-" + tpSpan + "-01", continued: true},
	{name: "with tracestate", traceparent: "00-" + tpTrace + "-" + tpSpan + "-01",
		tracestate: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", continued: true, wantState: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
	{name: "not sampled flag", traceparent: "00-" + tpTrace + "-" + tpSpan + "-00", continued: true},
	// Go's header map is one Swiss-table group up to 8 entries; 20 more
	// headers make it a directory of tables.
	{name: "many headers", traceparent: "00-" + tpTrace + "-" + tpSpan + "-01", extra: 20,
		tracestate: "k=v", continued: true, wantState: "k=v"},
	{name: "future version", traceparent: "cc-" + tpTrace + "-" + tpSpan + "-01-what-the-future-holds", continued: true},
	{name: "too long tracestate", traceparent: "00-" + tpTrace + "-" + tpSpan + "-01",
		tracestate: "k=" + strings.Repeat("v", 300), continued: true},
	{name: "uppercase hex", traceparent: "00-" + strings.ToUpper(tpTrace) + "-" + tpSpan + "-01"},
	{name: "zero trace id", traceparent: "00-" + strings.Repeat("0", 32) + "-" + tpSpan + "-01"},
	{name: "zero span id", traceparent: "00-" + tpTrace + "-" + strings.Repeat("0", 16) + "-01"},
	{name: "version ff", traceparent: "ff-" + tpTrace + "-" + tpSpan + "-01"},
	{name: "version 00 too long", traceparent: "00-" + tpTrace + "-" + tpSpan + "-01-x"},
	{name: "short", traceparent: "00-" + tpTrace[:30] + "-" + tpSpan + "-01"},
	{name: "garbage", traceparent: strings.Repeat("z", 55)},
	{name: "none"},
}

// TestIncomingTraceparent sends requests carrying W3C trace context headers,
// valid and not, and checks that each server span continues the caller's
// trace exactly when the traceparent is valid, with the tracestate kept, in
// the JSON output and in Jaeger. Every case runs 40 times with different
// span IDs so that no two requests can be confused.
func TestIncomingTraceparent(t *testing.T) {
	testenv.RequireRoot(t)
	j := jaeger.Start(t)
	zt := testenv.BuildZerotrace(t)
	cmd, addr := testenv.StartSampleApp(t, testenv.BuildSampleApp(t))
	service := fmt.Sprintf("e2e-traceparent-%d", time.Now().UnixNano())
	a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(cmd.Process.Pid), "--output", "json",
		"--service-name", service, "--otlp-endpoint", j.OTLPEndpoint())

	const rounds = 40
	type sent struct {
		incoming
		id        string
		traceID   string // the trace the span must be in, when continued
		parentID  string
		headerVal string
	}
	var all []sent
	c := &http.Client{Timeout: 10 * time.Second}
	for r := range rounds {
		for i, tc := range incomingCases {
			s := sent{incoming: tc, id: fmt.Sprintf("%d-%d", r, i)}
			// A distinct trace and parent per request.
			tag := fmt.Sprintf("%04x%02x", r, i)
			s.headerVal = strings.Replace(tc.traceparent, tpTrace, tpTrace[:26]+tag, 1)
			s.headerVal = strings.Replace(s.headerVal, tpSpan, tpSpan[:10]+tag, 1)
			if tc.continued {
				s.traceID, s.parentID = tpTrace[:26]+tag, tpSpan[:10]+tag
			}
			req, err := http.NewRequest("GET", "http://"+addr+"/hello?case="+url.QueryEscape(s.id), nil)
			if err != nil {
				t.Fatal(err)
			}
			if s.headerVal != "" {
				req.Header.Set("Traceparent", s.headerVal)
			}
			if tc.tracestate != "" {
				req.Header.Set("Tracestate", tc.tracestate)
			}
			for k := range tc.extra {
				req.Header.Set(fmt.Sprintf("X-Extra-%d", k), "1")
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: status %d", tc.name, resp.StatusCode)
			}
			all = append(all, s)
		}
	}
	a.stop()

	json := a.jsonSpans()
	states := map[string]string{}
	for _, s := range json {
		states[s.SpanID] = s.TraceState
	}
	check := func(source string, spans []observed, withState bool) {
		t.Helper()
		if len(spans) != len(all) {
			t.Errorf("%s: %d spans, want %d", source, len(spans), len(all))
		}
		byCase := map[string]observed{}
		for _, s := range spans {
			q, _ := url.ParseQuery(s.Attrs["url.query"])
			byCase[q.Get("case")] = s
		}
		roots := map[string]bool{}
		for _, want := range all {
			s, ok := byCase[want.id]
			if !ok {
				t.Errorf("%s: no span for case %q (%s)", source, want.name, want.id)
				continue
			}
			if want.continued {
				if s.TraceID != want.traceID || s.ParentSpanID != want.parentID {
					t.Errorf("%s: case %q: trace %s parent %q, want trace %s parent %s (from %q)",
						source, want.name, s.TraceID, s.ParentSpanID, want.traceID, want.parentID, want.headerVal)
				}
			} else {
				if s.ParentSpanID != "" || strings.HasPrefix(s.TraceID, tpTrace[:26]) {
					t.Errorf("%s: case %q: trace %s parent %q, want a new root (traceparent %q is invalid or absent)",
						source, want.name, s.TraceID, s.ParentSpanID, want.headerVal)
				}
				if roots[s.TraceID] {
					t.Errorf("%s: case %q: trace id %s reused", source, want.name, s.TraceID)
				}
				roots[s.TraceID] = true
			}
			if withState && states[s.SpanID] != want.wantState {
				t.Errorf("%s: case %q: trace_state %q, want %q", source, want.name, states[s.SpanID], want.wantState)
			}
		}
	}
	check("json output", fromJSON(json), true)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spans, err := j.WaitForSpans(ctx, service, len(all), 30*time.Second)
	if err != nil {
		t.Fatalf("reading spans back from jaeger: %v", err)
	}
	check("jaeger", fromJaeger(spans), false)
}
