package metrics

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
	"github.com/zerotrace/zerotrace/export/internal/spantest"
)

// TestWriteLosses checks the agent's loss counters on /metrics: absent until
// set, read afresh on every scrape, zeros included, labels escaped.
func TestWriteLosses(t *testing.T) {
	r := New()
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "zerotrace_lost") {
		t.Errorf("losses written before SetLosses:\n%s", b.String())
	}

	n := uint64(0)
	r.SetLosses(func() []Count {
		n++
		return []Count{{Name: "kernel_ringbuf_full", Value: n}, {Name: `odd"name`, Value: 0}}
	})
	for _, want := range []string{"1", "2"} {
		b.Reset()
		if err := r.Write(&b); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		line := `zerotrace_lost_total{reason="kernel_ringbuf_full"} ` + want
		if !strings.Contains(out, line+"\n") {
			t.Errorf("missing %q (each scrape reads the counts afresh):\n%s", line, out)
		}
		if !strings.Contains(out, `zerotrace_lost_total{reason="odd\"name"} 0`+"\n") {
			t.Errorf("zero count not written, or label not escaped:\n%s", out)
		}
		if !strings.HasPrefix(out, "# TYPE zerotrace_lost counter\n") || !strings.HasSuffix(out, "# EOF\n") {
			t.Errorf("not one well-formed family before # EOF:\n%s", out)
		}
	}
}

// TestHTTPDurationLabels: the RED histogram is labelled from the server
// span's exchange (the method as the conventions bound it), carries the
// trace ID as an exemplar, and finding a known series allocates nothing.
func TestHTTPDurationLabels(t *testing.T) {
	r := New()
	p := spantest.Process()
	ok := spantest.Server(p)
	brew := spantest.Server(p)
	brew.HTTP = &model.HTTP{Method: "BREW", Path: "/pot", Status: 503}
	semconv.Apply(brew, nil)
	batch := []*model.Span{ok, brew, spantest.Client(p), spantest.DB(p)}
	if err := r.Export(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`http_server_request_duration_seconds_count{service_name="orders",http_request_method="GET",http_route="/users/{id}",http_response_status_code="200"} 1` + "\n",
		`http_server_request_duration_seconds_count{service_name="orders",http_request_method="_OTHER",http_route="",http_response_status_code="503",error_type="503"} 1` + "\n",
		`http_server_request_duration_seconds_bucket{service_name="orders",http_request_method="GET",http_route="/users/{id}",http_response_status_code="200",le="0.0025"} 1 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.001234 1700000000.125` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "http_server_request_duration_seconds_count{"); n != 2 {
		t.Errorf("%d series, want 2 (client and database spans do not count):\n%s", n, out)
	}
	if n := testing.AllocsPerRun(100, func() { _ = r.Export(context.Background(), batch) }); n != 0 {
		t.Errorf("%v allocations per batch, want 0", n)
	}
}

func TestGauges(t *testing.T) {
	r := New()
	n := 0.0
	r.SetGauges(func() []Gauge {
		n++
		return []Gauge{{Name: "zerotrace_agent_goroutines", Help: "Goroutines of the agent.", Value: n}}
	})
	for want := 1; want <= 2; want++ {
		var b strings.Builder
		if err := r.Write(&b); err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("zerotrace_agent_goroutines %d\n", want)
		if !strings.Contains(b.String(), "# TYPE zerotrace_agent_goroutines gauge\n") || !strings.Contains(b.String(), line) {
			t.Errorf("scrape %d lacks %q:\n%s", want, line, b.String())
		}
	}
}
