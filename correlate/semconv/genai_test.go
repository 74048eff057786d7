package semconv

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
)

var start = time.Unix(1_800_000_000, 0)

// genAISpan is a client span of a streamed chat call as the capture fills
// it.
func genAISpan(kind trace.SpanKind) *model.Span {
	s := model.NewSpan()
	s.Kind = kind
	s.Start, s.End = start, start.Add(150*time.Millisecond)
	h := s.UseHTTP()
	h.Method, h.Scheme, h.Host, h.Path, h.Status = "POST", "http", "127.0.0.1:11434", "/v1/chat/completions", 200
	g := s.UseGenAI()
	g.API, g.Operation, g.Provider = model.GenAIChatCompletions, "chat", "openai"
	g.RequestModel, g.ResponseModel, g.ResponseID = "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "chatcmpl-1"
	g.MaxTokens, g.Temperature, g.Params, g.ChoiceCount = 64, 0.2, model.GenAITemperature, 1
	g.Stream = true
	g.AddFinishReason("stop")
	g.AddStop("END")
	g.Usage = model.GenAIUsage{Input: 21, Output: 11, CacheRead: 8, CacheCreation: -1, Reasoning: 0}
	g.FirstChunk, g.FirstToken, g.LastChunk = start.Add(80*time.Millisecond), start.Add(90*time.Millisecond), start.Add(140*time.Millisecond)
	g.Chunks, g.ContentChunks = 12, 11
	g.SystemFingerprint, g.RequestServiceTier = "fp_1", "auto"
	return s
}

func attrMap(t *testing.T, kvs []attribute.KeyValue) map[string]attribute.Value {
	t.Helper()
	m := map[string]attribute.Value{}
	for _, kv := range kvs {
		if _, dup := m[string(kv.Key)]; dup {
			t.Errorf("attribute %s twice", kv.Key)
		}
		m[string(kv.Key)] = kv.Value
	}
	return m
}

func TestGenAIClientSpan(t *testing.T) {
	s := genAISpan(trace.SpanKindClient)
	Apply(s, nil)
	if s.Name != "chat gpt-4o-mini" || s.Status != codes.Unset {
		t.Errorf("name %q status %v", s.Name, s.Status)
	}
	m := attrMap(t, s.Attributes)
	for k, want := range map[string]any{
		"gen_ai.operation.name":                     "chat",
		"gen_ai.provider.name":                      "openai",
		"gen_ai.request.model":                      "gpt-4o-mini",
		"gen_ai.request.max_tokens":                 int64(64),
		"gen_ai.request.temperature":                0.2,
		"gen_ai.request.stream":                     true,
		"gen_ai.request.stop_sequences":             []string{"END"},
		"gen_ai.response.model":                     "gpt-4o-mini-2024-07-18",
		"gen_ai.response.id":                        "chatcmpl-1",
		"gen_ai.response.finish_reasons":            []string{"stop"},
		"gen_ai.usage.input_tokens":                 int64(21),
		"gen_ai.usage.output_tokens":                int64(11),
		"gen_ai.usage.cache_read.input_tokens":      int64(8),
		"gen_ai.usage.reasoning.output_tokens":      int64(0),
		"gen_ai.response.time_to_first_chunk":       0.08,
		"zerotrace.gen_ai.time_to_first_token":      0.09,
		"zerotrace.gen_ai.chunks":                   int64(12),
		"zerotrace.gen_ai.output_tokens_per_second": 200.0, // 10 tokens after the first in 50 ms
		"openai.api.type":                           "chat_completions",
		"openai.request.service_tier":               "auto",
		"openai.response.system_fingerprint":        "fp_1",
		"url.full":                                  "http://127.0.0.1:11434/v1/chat/completions",
		"http.response.status_code":                 int64(200),
	} {
		got, ok := m[k]
		if !ok {
			t.Errorf("%s missing", k)
			continue
		}
		if g := got.AsInterface(); !equalish(g, want) {
			t.Errorf("%s = %v (%T), want %v", k, g, g, want)
		}
	}
	for _, k := range []string{"gen_ai.request.choice.count", "gen_ai.usage.cache_creation.input_tokens", "gen_ai.request.top_p",
		"gen_ai.request.seed", "error.type", "gen_ai.input.messages", "gen_ai.output.messages", "zerotrace.gen_ai.usage.estimated",
		"zerotrace.gen_ai.body.truncated"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s set", k)
		}
	}
}

func equalish(got, want any) bool {
	switch w := want.(type) {
	case float64:
		g, ok := got.(float64)
		return ok && g > w-1e-9 && g < w+1e-9
	case []string:
		g, ok := got.([]string)
		return ok && strings.Join(g, "\x00") == strings.Join(w, "\x00")
	}
	return got == want
}

// TestGenAIErrors: the API's error type is error.type (once), a client
// span fails on a 4xx, a server span only on a 5xx or a stream that
// failed after its head.
func TestGenAIErrors(t *testing.T) {
	for _, c := range []struct {
		kind      trace.SpanKind
		status    int
		errType   string
		wantErr   bool
		wantType  string
		wantTypes int
	}{
		{trace.SpanKindClient, 429, "requests", true, "requests", 1},
		{trace.SpanKindClient, 500, "", true, "500", 1},
		{trace.SpanKindClient, 200, "stream_cut", true, "stream_cut", 1},
		{trace.SpanKindServer, 429, "requests", false, "", 0},
		{trace.SpanKindServer, 503, "overloaded_error", true, "overloaded_error", 1},
		{trace.SpanKindServer, 200, "server_error", true, "server_error", 1},
	} {
		s := genAISpan(c.kind)
		s.HTTP.Status = c.status
		s.GenAI.ErrorType, s.GenAI.ErrorMessage = c.errType, "Rate limit for a@b.com"
		Apply(s, nil)
		n, got := 0, ""
		for _, kv := range s.Attributes {
			if kv.Key == "error.type" {
				n++
				got = kv.Value.AsString()
			}
		}
		if (s.Status == codes.Error) != c.wantErr || n != c.wantTypes || got != c.wantType {
			t.Errorf("%v %d %q: status %v %q, error.type %q ×%d", c.kind, c.status, c.errType, s.Status, s.StatusMsg, got, n)
		}
		if c.errType != "" && c.wantErr && s.StatusMsg != "Rate limit for REDACTED" {
			t.Errorf("status message %q not the redacted API message", s.StatusMsg)
		}
	}
}

// TestGenAIContent: content goes out only when captured, as the
// conventions' JSON, redacted.
func TestGenAIContent(t *testing.T) {
	s := genAISpan(trace.SpanKindClient)
	g := s.GenAI
	g.SystemInstructions = "Be terse"
	g.Input = []model.GenAIMessage{{Role: "user", Text: "mail zt-canary-1 to a@b.com"}}
	g.Output = []model.GenAIMessage{{Role: "assistant", Text: "done, card 4111 1111 1111 1111", FinishReason: "stop"}}
	g.ContentCut = true
	Apply(s, nil)
	m := attrMap(t, s.Attributes)
	var in, out []map[string]any
	var sys []map[string]any
	for k, dst := range map[string]any{"gen_ai.input.messages": &in, "gen_ai.output.messages": &out, "gen_ai.system_instructions": &sys} {
		v, ok := m[k]
		if !ok {
			t.Fatalf("%s missing", k)
		}
		if err := json.Unmarshal([]byte(v.AsString()), dst); err != nil {
			t.Fatalf("%s: %v in %s", k, err, v.AsString())
		}
	}
	if got := m["gen_ai.input.messages"].AsString(); got != `[{"role":"user","parts":[{"type":"text","content":"mail zt-canary-1 to REDACTED"}]}]` {
		t.Errorf("input %s", got)
	}
	if got := m["gen_ai.output.messages"].AsString(); strings.Contains(got, "4111") || !strings.Contains(got, `"finish_reason":"stop"`) {
		t.Errorf("output %s", got)
	}
	if !m["zerotrace.gen_ai.content.truncated"].AsBool() {
		t.Error("content cut not said")
	}
	if strings.Contains(g.Input[0].Text, "a@b.com") {
		t.Error("the exchange's text was not redacted in place")
	}
}

func TestGenAINames(t *testing.T) {
	s := genAISpan(trace.SpanKindServer)
	s.GenAI.RequestModel = ""
	s.GenAI.Operation = "embeddings"
	m := NewMapper(nil)
	m.Apply(s)
	if s.Name != "embeddings" {
		t.Errorf("no model: %q", s.Name)
	}
	s = genAISpan(trace.SpanKindServer)
	s.GenAI.Cut = model.GenAICutRequest | model.GenAICutResponse | model.GenAIEncoded
	s.GenAI.Usage.Estimated = true
	s.GenAI.Priced, s.GenAI.CostUSD = true, 0.0125
	m.Apply(s)
	a := attrMap(t, s.Attributes)
	if s.Name != "chat gpt-4o-mini" || a["zerotrace.gen_ai.body.truncated"].AsString() != "request_and_response" ||
		!a["zerotrace.gen_ai.body.encoded"].AsBool() || !a["zerotrace.gen_ai.usage.estimated"].AsBool() ||
		a["zerotrace.gen_ai.cost_usd"].AsFloat64() != 0.0125 || a["url.path"].AsString() != "/v1/chat/completions" {
		t.Errorf("server span %q: %v", s.Name, a)
	}
	// Anthropic and Ollama get no openai.* attributes.
	s = genAISpan(trace.SpanKindClient)
	s.GenAI.API, s.GenAI.Provider = model.GenAIMessages, "anthropic"
	Apply(s, nil)
	for _, kv := range s.Attributes {
		if strings.HasPrefix(string(kv.Key), "openai.") {
			t.Errorf("%s on an Anthropic call", kv.Key)
		}
	}
}

func BenchmarkGenAIApply(b *testing.B) {
	m := NewMapper(nil)
	s := genAISpan(trace.SpanKindClient)
	b.ReportAllocs()
	for b.Loop() {
		g := *s.GenAI
		m.Apply(s)
		*s.GenAI = g
	}
}
