package correlate

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
)

// TestGenAIConfig: the gen_ai configuration reaches every part of a model
// server's span on the kernel path: a configured whole path is recognised
// as a call, the host's configured provider replaces the API's, the price
// table gives the cost, and the captured prompt and answer go out through
// the redactor (the API key in the prompt does not).
func TestGenAIConfig(t *testing.T) {
	prices, err := genai.NewPrices(map[string]genai.Price{"gpt-test*": {Input: 2, Output: 8}})
	if err != nil {
		t.Fatal(err)
	}
	routes := genai.NewRoutes()
	routes.AddPath("/llm/v2/generate", model.GenAIChatCompletions)
	cfg := &genai.Config{Content: true, MaxContent: 64, Routes: routes, Prices: prices,
		Providers: map[string]string{"models.internal:8000": "vllm"}}

	spans := func(cfg *genai.Config, path string) []*model.Span {
		c := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		c.SetGenAI(cfg)
		c.Register(model.NewProcess(7, "/usr/bin/python3", "models", ""))
		body := `{"model":"gpt-test","messages":[{"role":"user","content":"my key is sk-proj-Zt0pS3cretK3yAbCdEfGh1234 ok"}]}`
		req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: models.internal:8000\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
		answer := `{"id":"c1","model":"gpt-test-1","choices":[{"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":500}}`
		resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
		var out []*model.Span
		for _, d := range []*SockData{sock(SockRead, 4, 0, req), sock(SockWrite, 4, 50, resp), sock(SockClose, 4, 60, "")} {
			out = append(out, c.HandleAll(d)...)
		}
		return out
	}

	got := spans(cfg, "/llm/v2/generate")
	if len(got) != 1 || got[0].GenAI == nil {
		t.Fatalf("%d spans, want one model call", len(got))
	}
	a := map[string]string{}
	for _, kv := range got[0].Attributes {
		a[string(kv.Key)] = kv.Value.Emit()
	}
	for k, want := range map[string]string{
		"gen_ai.provider.name":      "vllm",
		"zerotrace.gen_ai.cost_usd": "0.006", // 1000 × 2 + 500 × 8 per million
		"gen_ai.output.messages":    `[{"role":"assistant","parts":[{"type":"text","content":"hello there"}],"finish_reason":"stop"}]`,
	} {
		if a[k] != want {
			t.Errorf("%s = %q, want %q", k, a[k], want)
		}
	}
	if in := a["gen_ai.input.messages"]; !strings.Contains(in, "my key is") || !strings.Contains(in, "REDACTED") || strings.Contains(in, "S3cret") {
		t.Errorf("input messages not captured redacted: %q", in)
	}

	// Without the configuration: the path is no model call, and nothing
	// of the prompt is kept even on a default route.
	if got := spans(nil, "/llm/v2/generate"); len(got) != 1 || got[0].GenAI != nil {
		t.Errorf("the configured path is a model call without the configuration")
	}
	got = spans(nil, "/v1/chat/completions")
	if len(got) != 1 || got[0].GenAI == nil {
		t.Fatalf("the default route is not a model call")
	}
	for _, kv := range got[0].Attributes {
		if v := kv.Value.Emit(); strings.Contains(v, "my key") || strings.Contains(v, "hello there") {
			t.Errorf("content exported by default: %s = %q", kv.Key, v)
		}
		if kv.Key == "zerotrace.gen_ai.cost_usd" || (kv.Key == "gen_ai.provider.name" && kv.Value.Emit() != "openai") {
			t.Errorf("%s = %s without the configuration", kv.Key, kv.Value.Emit())
		}
	}
}
