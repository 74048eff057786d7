package genai

import (
	"math"
	"net/netip"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
)

func TestPrices(t *testing.T) {
	p, err := NewPrices(map[string]Price{
		"gpt-4o":         {Input: 2.5, Output: 10},
		"gpt-4o*":        {Input: 2, Output: 8},
		"gpt-4o-mini*":   {Input: 0.15, Output: 0.6, CachedInput: 0.075},
		"claude-3-haiku": {Input: 0.25, Output: 1.25},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want float64 // input price, to tell the entries apart
		ok   bool
	}{
		{"gpt-4o", 2.5, true},                  // exact wins over its own prefix
		{"gpt-4o-2024-08-06", 2, true},         // prefix
		{"gpt-4o-mini-2024-07-18", 0.15, true}, // the longest prefix wins
		{"claude-3-haiku-20240307", 0, false},  // exact names are not prefixes
		{"", 0, false},
	} {
		got, ok := p.Lookup(tc.name)
		if ok != tc.ok || got.Input != tc.want {
			t.Errorf("Lookup(%q) = %v, %v; want input %v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}

	g := model.NewGenAI()
	g.RequestModel, g.ResponseModel = "gpt-4o-mini", "gpt-4o-mini-2024-07-18"
	if _, ok := p.Cost(g); ok {
		t.Error("a call with no usage is priced")
	}
	g.Usage.Input, g.Usage.Output, g.Usage.CacheRead = 1_000_000, 100_000, 400_000
	// 600k uncached at 0.15, 400k cached at 0.075, 100k out at 0.6.
	if c, ok := p.Cost(g); !ok || math.Abs(c-(0.09+0.03+0.06)) > 1e-12 {
		t.Errorf("cost %v, %v", c, ok)
	}
	// The response's model is priced first; the request's when the
	// response has none the table knows.
	g.ResponseModel = "unknown-model"
	g.Usage = model.GenAIUsage{Input: 1_000_000, Output: -1, CacheRead: -1, CacheCreation: -1, Reasoning: -1}
	if c, ok := p.Cost(g); !ok || math.Abs(c-0.15) > 1e-12 {
		t.Errorf("embedding-like cost %v, %v", c, ok)
	}
	g.RequestModel = "llama3"
	if _, ok := p.Cost(g); ok {
		t.Error("an unpriced model is priced")
	}

	for _, bad := range []map[string]Price{
		{"": {Input: 1}},
		{"*": {Input: 1}},
		{"gpt-*-mini": {Input: 1}},
		{"m": {Input: -1}},
		{"m": {Output: math.NaN()}},
		{"m": {CachedInput: math.Inf(1)}},
	} {
		if _, err := NewPrices(bad); err == nil {
			t.Errorf("NewPrices(%v) accepted", bad)
		}
	}
}

func TestParseRouteAndHost(t *testing.T) {
	for _, tc := range []struct {
		path, api string
		err       string
	}{
		{"/llm/v2/generate", "openai.chat_completions", ""},
		{"v2/generate", "ollama.generate", ""},
		{"generate", "anthropic.messages", ""},
		{"a/b/c", "openai.chat_completions", "one or two segments"},
		{"/", "openai.chat_completions", "want a path"},
		{"/x?y=1", "openai.chat_completions", "want a path"},
		{"/x", "openai_chat", "openai.chat_completions, "},
	} {
		_, err := ParseRoute(tc.path, tc.api)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseRoute(%q, %q) = %v, want %q", tc.path, tc.api, err, tc.err)
		}
	}
	for in, want := range map[string]string{
		"LiteLLM.internal:4000": "litellm.internal:4000",
		"10.0.0.7":              "10.0.0.7",
		"[::1]:8000":            "[::1]:8000",
		"::1":                   "::1",
		"http://x":              "",
		"x:0":                   "",
		"x:port":                "",
		"":                      "",
		"a/b":                   "",
	} {
		got, err := ParseProviderHost(in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("ParseProviderHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestConfigRoutesAndProviders(t *testing.T) {
	r := NewRoutes()
	r.AddPath("/llm/v2/generate/", model.GenAIOllamaGenerate)
	c := &Config{Routes: r, Providers: map[string]string{"gw:4000": "azure.ai.openai", "10.1.2.3": "vllm", "127.0.0.1:9000": "self"}}
	for path, want := range map[string]model.GenAIAPI{
		"/llm/v2/generate?x=1":     model.GenAIOllamaGenerate,
		"/v1/chat/completions":     model.GenAIChatCompletions, // defaults stay
		"/other/llm/v2/generate":   model.GenAINone,            // whole paths match whole
		"/prefix/v1/messages":      model.GenAIMessages,
		"/llm/v2/generate/further": model.GenAINone,
	} {
		if got, _ := c.Recognize("POST", path); got != want {
			t.Errorf("Recognize(%q) = %v, want %v", path, got, want)
		}
	}
	var none *Config
	if _, ok := none.Recognize("POST", "/llm/v2/generate"); ok {
		t.Error("a nil Config knows configured routes")
	}
	if o := none.Options(nil); o.Content {
		t.Error("a nil Config captures content")
	}

	span := func(kind trace.SpanKind, host string, peer, local string) *model.Span {
		s := &model.Span{Kind: kind, HTTP: &model.HTTP{Host: host}}
		if peer != "" {
			s.HTTP.Peer = netip.MustParseAddrPort(peer)
		}
		if local != "" {
			s.HTTP.Local = netip.MustParseAddrPort(local)
		}
		s.UseGenAI().Provider = "openai"
		return s
	}
	for _, tc := range []struct {
		s    *model.Span
		want string
	}{
		{span(trace.SpanKindClient, "GW:4000", "", ""), "azure.ai.openai"},
		{span(trace.SpanKindClient, "10.1.2.3:8000", "", ""), "vllm"},                // host without its port
		{span(trace.SpanKindClient, "", "[::ffff:10.1.2.3]:443", ""), "vllm"},        // the peer, unmapped
		{span(trace.SpanKindServer, "", "127.0.0.1:5555", "127.0.0.1:9000"), "self"}, // a server's own address
		{span(trace.SpanKindClient, "gw:4001", "", ""), "openai"},
	} {
		c.Settle(tc.s)
		if tc.s.GenAI.Provider != tc.want {
			t.Errorf("host %q peer %v local %v: provider %q, want %q", tc.s.HTTP.Host, tc.s.HTTP.Peer, tc.s.HTTP.Local, tc.s.GenAI.Provider, tc.want)
		}
		if tc.s.GenAI.Priced {
			t.Error("priced with no price table")
		}
	}
}
