package servicemap

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"
)

// genAISpan is a streamed chat completion of svc to host (kind CLIENT or
// SERVER), first token after ttft, output tokens out over the next
// 100 ms, span id id.
func genAISpan(svc string, kind trace.SpanKind, id, parent byte, start time.Time, host, modelName string, ttft time.Duration, out int64, failed bool) *model.Span {
	s := &model.Span{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{id}, ParentSpanID: trace.SpanID{parent},
		Kind: kind, Start: start, End: start.Add(ttft + 110*time.Millisecond),
		Process: model.NewProcess(1, "/bin/"+svc, svc, ""),
		HTTP:    &model.HTTP{Method: "POST", Host: host, Path: "/v1/chat/completions", Status: 200},
	}
	g := s.UseGenAI()
	g.API, g.Operation, g.Provider, g.RequestModel, g.ResponseModel = model.GenAIChatCompletions, "chat", "openai", modelName, modelName+"-1"
	g.Stream, g.Usage.Input, g.Usage.Output = true, 10, out
	g.FirstChunk, g.FirstToken, g.LastChunk = start.Add(ttft), start.Add(ttft), start.Add(ttft+100*time.Millisecond)
	g.Priced, g.CostUSD = true, 0.5
	if failed {
		s.HTTP.Status = 500
		g.ErrorType = "server_error"
	}
	semconv.Apply(s, nil)
	return s
}

// TestModelNodes: model calls to an endpoint no traced process answers
// make a node of kind model with the providers, models, tokens, rate,
// time to first token and errors of the calls; a traced model server keeps
// its service node and gets its own measure of the calls.
func TestModelNodes(t *testing.T) {
	now := time.Unix(1000, 0)
	g := New(time.Minute)
	g.now = func() time.Time { return now }
	ctx := context.Background()
	var spans []*model.Span
	for i := range 10 {
		// TTFT 10, 20, ... 100 ms; 11 tokens in 100 ms: 100 tokens/s.
		spans = append(spans, genAISpan("gw", trace.SpanKindClient, byte(10+i), 1, now, "api.openai.com:443", "gpt-4o",
			time.Duration(i+1)*10*time.Millisecond, 11, i == 9))
	}
	// A traced model server, called by nobody traced.
	spans = append(spans, genAISpan("vllm", trace.SpanKindServer, 40, 99, now, "127.0.0.1:8000", "llama", 50*time.Millisecond, 21, false))
	_ = g.Export(ctx, spans)
	g.Flush()
	m := g.Snapshot()

	nodes := map[string]Node{}
	for _, n := range m.Nodes {
		nodes[n.ID] = n
	}
	api, ok := nodes["model:api.openai.com:443"]
	if !ok || api.Kind != KindModel || api.GenAI == nil {
		t.Fatalf("no model node for the API: %+v", m.Nodes)
	}
	s := api.GenAI
	if s.Requests != 10 || s.Errors != 1 || s.InputTokens != 100 || s.OutputTokens != 110 ||
		strings.Join(s.Providers, ",") != "openai" || strings.Join(s.Models, ",") != "gpt-4o-1" ||
		s.TTFTP50Ms != 50 || s.TTFTP95Ms != 90 || s.OutputTokensPerSecond != 100 || s.CostUSD != 5 {
		t.Errorf("model node stats %+v", *s)
	}
	var edge bool
	for _, e := range m.Edges {
		edge = edge || e.Source == "service:gw" && e.Target == api.ID && e.Total.Requests == 10
	}
	if !edge {
		t.Errorf("no edge gw → model node: %+v", m.Edges)
	}
	srv := nodes["service:vllm"]
	if srv.Kind != KindService || srv.GenAI == nil || srv.GenAI.Requests != 1 || srv.GenAI.OutputTokensPerSecond != 200 {
		t.Errorf("traced model server %+v %+v", srv, srv.GenAI)
	}

	var b strings.Builder
	if err := Render(&b, m, "table"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "MODEL ENDPOINT") || !strings.Contains(b.String(), "api.openai.com:443 (model)  openai") {
		t.Errorf("table:\n%s", b.String())
	}
	b.Reset()
	_ = Render(&b, m, "dot")
	if !strings.Contains(b.String(), `"model:api.openai.com:443" [label="api.openai.com:443 [gpt-4o-1]", shape=hexagon]`) {
		t.Errorf("dot:\n%s", b.String())
	}

	// Outside the window the calls no longer count.
	now = now.Add(2 * time.Minute)
	if st := nodeOf(g.Snapshot(), api.ID).GenAI; st == nil || st.Requests != 0 || st.TTFTP50Ms != 0 {
		t.Errorf("after the window: %+v", st)
	}
}

func nodeOf(m Map, id string) Node {
	for _, n := range m.Nodes {
		if n.ID == id {
			return n
		}
	}
	return Node{}
}
