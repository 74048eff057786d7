package metrics

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
	"github.com/zerotrace/zerotrace/export/internal/spantest"
)

func scrape(t *testing.T, r *Registry) string {
	t.Helper()
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestGenAIMetrics: a model call's client span feeds the conventions'
// client histograms (tokens by type, duration, first chunk, per chunk) and
// the cost counter, with exemplars; the same call seen from the model
// server feeds the server's; finding known series allocates nothing.
func TestGenAIMetrics(t *testing.T) {
	r := New()
	p := spantest.Process()
	client := spantest.GenAIClient(p)
	server := spantest.GenAIClient(p)
	server.Kind = trace.SpanKindServer
	server.HTTP.Local = server.HTTP.Peer
	semconv.Apply(server, nil)
	batch := []*model.Span{client, server, spantest.Server(p)}
	if err := r.Export(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	out := scrape(t, r)
	const l = `service_name="orders",gen_ai_operation_name="chat",gen_ai_provider_name="openai"`
	const m = `gen_ai_request_model="gpt-test",gen_ai_response_model="gpt-test-1",server_address="models",server_port="8000"`
	for _, want := range []string{
		"# TYPE gen_ai_client_token_usage histogram\n# HELP gen_ai_client_token_usage ",
		`gen_ai_client_token_usage_bucket{` + l + `,gen_ai_token_type="input",` + m + `,le="16"} 1 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 11 1700000000.263`,
		`gen_ai_client_token_usage_sum{` + l + `,gen_ai_token_type="output",` + m + `} 5`,
		"# UNIT gen_ai_client_operation_duration_seconds seconds\n",
		`gen_ai_client_operation_duration_seconds_bucket{` + l + `,` + m + `,le="0.16"} 1 # {trace_id=`,
		`gen_ai_client_operation_time_to_first_chunk_seconds_bucket{` + l + `,` + m + `,le="0.06"} 0`,
		`gen_ai_client_operation_time_to_first_chunk_seconds_bucket{` + l + `,` + m + `,le="0.08"} 1`,
		// 5 gaps of 10 ms between 6 chunks.
		`gen_ai_client_operation_time_per_output_chunk_seconds_count{` + l + `,` + m + `} 5`,
		`gen_ai_client_operation_time_per_output_chunk_seconds_bucket{` + l + `,` + m + `,le="0.01"} 5`,
		`zerotrace_gen_ai_server_token_usage_count{` + l + `,gen_ai_token_type="input",` + m + `} 1`,
		`gen_ai_server_request_duration_seconds_count{` + l + `,` + m + `} 1`,
		// The first token at 90 ms; 4 tokens after it in 40 ms.
		`gen_ai_server_time_to_first_token_seconds_bucket{` + l + `,` + m + `,le="0.1"} 1`,
		`gen_ai_server_time_per_output_token_seconds_count{` + l + `,` + m + `} 4`,
		"# TYPE zerotrace_gen_ai_cost_usd counter\n",
		`zerotrace_gen_ai_cost_usd_total{service_name="orders",gen_ai_provider_name="openai",gen_ai_request_model="gpt-test",gen_ai_response_model="gpt-test-1",span_kind="client"} 0.0001 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.0001 1700000000.263`,
		`span_kind="server"} 0.0001`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "label_overflow") {
		t.Error("overflow counted with two model names")
	}
	if n := testing.AllocsPerRun(100, func() { _ = r.Export(context.Background(), batch) }); n != 0 {
		t.Errorf("%v allocations per batch, want 0", n)
	}

	// A failed call: its duration carries the API's error type.
	bad := spantest.GenAIClient(p)
	bad.HTTP.Status = 429
	bad.GenAI.ErrorType, bad.GenAI.ErrorMessage = "rate_limit_exceeded", "slow down"
	semconv.Apply(bad, nil)
	_ = r.Export(context.Background(), []*model.Span{bad})
	if want := `gen_ai_client_operation_duration_seconds_count{` + l + `,` + m + `,error_type="rate_limit_exceeded"} 1`; !strings.Contains(scrape(t, r), want) {
		t.Errorf("missing %q", want)
	}
}

// TestGenAIMetricsBounded: model names are user input; past the bound a
// new one is written _OTHER and counted, so the series stay bounded.
func TestGenAIMetricsBounded(t *testing.T) {
	r := New()
	p := spantest.Process()
	for i := range maxGenAIModels + 10 {
		s := spantest.GenAIClient(p)
		s.GenAI.RequestModel, s.GenAI.ResponseModel = fmt.Sprintf("m%d", i), ""
		semconv.Apply(s, nil)
		_ = r.Export(context.Background(), []*model.Span{s})
	}
	out := scrape(t, r)
	if n := strings.Count(out, "gen_ai_client_operation_duration_seconds_count{"); n != maxGenAIModels+1 {
		t.Errorf("%d duration series, want %d and one _OTHER", n, maxGenAIModels)
	}
	for _, want := range []string{`gen_ai_request_model="_OTHER"`, `zerotrace_gen_ai_label_overflow_total{label="gen_ai_model"} `} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q", want)
		}
	}
}
