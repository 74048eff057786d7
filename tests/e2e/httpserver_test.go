// Package e2e runs zerotrace against real processes: it builds the sample
// service, starts it before the agent, attaches by PID, drives traffic and
// reads the spans back from a real Jaeger and from the JSON output.
package e2e

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/jaeger"
	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

func fromJaeger(spans []jaeger.Span) []observed {
	out := make([]observed, len(spans))
	for i, s := range spans {
		o := observed{
			TraceID: s.TraceID, SpanID: s.SpanID, ParentSpanID: s.ParentSpanID,
			Name: s.OperationName, Kind: s.Kind,
			Start: s.StartTime, End: s.StartTime.Add(s.Duration),
			Attrs: strMap(s.Tags), Resource: strMap(s.Process.Tags),
			Status: "unset",
		}
		o.Resource["service.name"] = s.Process.ServiceName
		switch o.Attrs["otel.status_code"] {
		case "ERROR":
			o.Status = "error"
		case "OK":
			o.Status = "ok"
		}
		out[i] = o
	}
	return out
}

func goVersionOf(t *testing.T, bin string) string {
	t.Helper()
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return bi.GoVersion
}

// traceSampleApp runs the whole path for one build of the sample app: start
// it, attach, send n requests, detach, and check the spans in the JSON
// output and, when j is not nil, in Jaeger.
// offsetsFrom is what the agent must say about where the struct offsets
// came from ("dwarf" or "table").
func traceSampleApp(t *testing.T, j *jaeger.Jaeger, app string, n int, offsetsFrom string) {
	zt := testenv.BuildZerotrace(t)
	cmd, addr := testenv.StartSampleApp(t, app)
	service := fmt.Sprintf("e2e-%s-%d", filepath.Base(app), time.Now().UnixNano())
	args := []string{"attach", "--pid", fmt.Sprint(cmd.Process.Pid), "--output", "json", "--service-name", service}
	if j != nil {
		args = append(args, "--otlp-endpoint", j.OTLPEndpoint())
	}
	a := startAgent(t, zt, nil, args...)
	if !strings.Contains(a.Stderr(), "offsets from "+offsetsFrom) {
		t.Errorf("the agent did not take offsets from %s:\n%s", offsetsFrom, a.Stderr())
	}

	reqs := mixedRequests(n)
	send(t, addr, reqs)
	a.stop()

	want := expectation{
		service:   service,
		pid:       cmd.Process.Pid,
		goVersion: goVersionOf(t, app),
		exeName:   filepath.Base(app),
		addr:      addr,
	}
	checkServerSpans(t, "json output", fromJSON(a.jsonSpans()), reqs, want)
	if j == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spans, err := j.WaitForSpans(ctx, service, n, 30*time.Second)
	if err != nil {
		t.Fatalf("reading spans back from jaeger: %v", err)
	}
	checkServerSpans(t, "jaeger", fromJaeger(spans), reqs, want)
}

// TestHTTPServerSpans traces the sample app built with this repository's Go
// toolchain and checks every span in Jaeger and in the JSON output.
func TestHTTPServerSpans(t *testing.T) {
	testenv.RequireRoot(t)
	j := jaeger.Start(t)
	traceSampleApp(t, j, testenv.BuildSampleApp(t), 120, "dwarf")
}

// TestHTTPServerSpansJSON traces the default build like TestHTTPServerSpans
// but checks the JSON output only. Needing no Jaeger, it is the one the
// kernel matrix runs in its guests for that build.
func TestHTTPServerSpansJSON(t *testing.T) {
	testenv.RequireRoot(t)
	traceSampleApp(t, nil, testenv.BuildSampleApp(t), 60, "dwarf")
}

// TestHTTPServerSpansGo127 does the same for a service built with Go 1.27,
// whose struct offsets come from its DWARF.
func TestHTTPServerSpansGo127(t *testing.T) {
	testenv.RequireRoot(t)
	traceSampleApp(t, nil, testenv.BuildSampleAppWith(t, "go1.27.3", ""), 36, "dwarf")
}

// TestHTTPServerSpansStripped traces binaries built without symbol table
// and DWARF (-s -w): functions come from pclntab and offsets from the
// bundled table, for both toolchains.
func TestHTTPServerSpansStripped(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []string{"", "go1.27.3"} {
		name := tc
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			traceSampleApp(t, nil, testenv.BuildSampleAppWith(t, tc, "-s -w"), 36, "table")
		})
	}
}
